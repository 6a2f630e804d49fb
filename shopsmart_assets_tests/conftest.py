"""Shared fixtures: one local Spark session per test run, small generated sources, and a
helper that materializes partition ranges through Dagster exactly as the CLI does."""

from __future__ import annotations

import atexit
import ipaddress
import math
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property
from pathlib import Path
from typing import TypeVar

import dagster as dg
import pytest
import sqlalchemy as sa
from filelock import FileLock

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


def _ram_temp_dir() -> Path | None:
    """A private directory on a RAM file system (/dev/shm), or None where there is none."""
    ram = Path("/dev/shm")
    if not (ram.is_dir() and os.access(ram, os.W_OK)):
        return None
    if shutil.disk_usage(ram).free < 4 * 2**30:  # a container's 64 MiB /dev/shm: the disk
        return None
    directory = ram / f"shopsmart-tests-{os.getuid()}"
    directory.mkdir(mode=0o700, exist_ok=True)
    stat = directory.stat()
    return directory if stat.st_uid == os.getuid() and stat.st_mode & 0o077 == 0 else None


# The test run's temporary files (pytest's tmp_path, the generated SQLite sources, Dagster
# instances, MLflow and Feast stores, lakes) on a RAM file system where there is one, unless
# TMPDIR says otherwise: SQLite commits every Dagster event, and an fsync on a VM's disk may
# take 20 ms (500 commits: 9.3 s on disk, 0.2 s on tmpfs; 3 days of hourly extraction through
# Dagster 35 → 21 s). Set before any temporary directory is made; the workers and the
# processes the tests start (`dagster` commands, `dagster dev`) inherit it through TMPDIR.
if "TMPDIR" not in os.environ and (_RAM_TEMP := _ram_temp_dir()) is not None:
    os.environ["TMPDIR"] = str(_RAM_TEMP)
    tempfile.tempdir = str(_RAM_TEMP)
# Nothing a test runs may touch the developer's own data directory (`make test` exports the
# one `make demo` uses): tests that need one set their own.
os.environ["SHOPSMART_DATA_DIR"] = tempfile.mkdtemp(prefix="shopsmart-tests-data-")
atexit.register(shutil.rmtree, os.environ["SHOPSMART_DATA_DIR"], ignore_errors=True)
# The test run's Spark drivers run small, short jobs, and on 2 cores the suite's time is CPU
# time: the JIT's first tier only and the serial collector halve a driver JVM's CPU (a session
# and three small queries: 27 → 15 CPU s), and its wall time drops too; not verifying the
# bytecode of Spark's own jars as they load saves another fifth (20 → 16.8 CPU s). On top, the
# drivers map Spark's classes from an archive the run writes at its start (jvm_archive.py:
# 19.8 → 11.8 CPU s). Given through PYSPARK_SUBMIT_ARGS (pytest_configure), which every driver
# pyspark launches in this test run reads (in process, `dagster` commands, `dagster dev`), with
# no Spark conf directory: the JVM maps no archive with a non-empty directory on its class
# path. At real volumes the full JIT wins: users and `make bench` keep the JVM's defaults. The
# executors a driver of this test run starts on a standalone cluster get the same JIT flags.
TEST_JVM_OPTIONS = (
    "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC "
    "-XX:+UnlockDiagnosticVMOptions -XX:-BytecodeVerificationRemote"
)
os.environ.pop("SPARK_CONF_DIR", None)

from shopsmart_assets.cli.demo import local_midnight  # noqa: E402
from shopsmart_assets.definitions import build_assets  # noqa: E402
from shopsmart_assets.defs.asset_graph import DeclaredAssetGraph  # noqa: E402
from shopsmart_assets.defs.automation.jobs import range_tags  # noqa: E402
from shopsmart_assets.demo.generator import DemoConfig, create_sources, generate  # noqa: E402
from shopsmart_assets.lake import lake_tables  # noqa: E402
from shopsmart_assets.partitions import Partitions, build_partitions  # noqa: E402
from shopsmart_assets.resources import (  # noqa: E402
    FeatureStoreResource,
    LakeResource,
    ModelRegistry,
    PromotionPolicy,
    SourceDatabase,
    feast_view_assets,
)
from shopsmart_assets.resources.spark import spark_config  # noqa: E402
from shopsmart_assets_tests.jvm_archive import (  # noqa: E402
    ClassArchiveBuild,
    class_archive_options,
    pyspark_submit_args,
    wait_for_class_archive,
)
from shopsmart_assets_tests.postgres_server import postgres_fixture  # noqa: E402

START = date(2026, 1, 1)
UTC_PARTITIONS = build_partitions(str(START), "UTC")
_GRAPH = DeclaredAssetGraph.of(build_assets(UTC_PARTITIONS))
# The chain as the definitions declare it: the hourly extracts, then the daily assets.
HOURLY = [k.to_user_string() for k in _GRAPH.partitioned_by(UTC_PARTITIONS.hourly)]
DAILY = [k.to_user_string() for k in _GRAPH.partitioned_by(UTC_PARTITIONS.daily)]


def class_archive() -> Path | None:
    """Where the test run's archive of Spark's classes is (or will be) written."""
    run_dir = os.environ.get(RUN_DIR_VAR)
    return Path(run_dir) / CLASS_ARCHIVE if run_dir else None


def spark_classes_ready() -> None:
    """Wait for the run's archive of Spark's classes, if it is being written, before starting
    a long-lived or early driver (pytest_configure)."""
    if archive := class_archive():
        wait_for_class_archive(archive)


@pytest.fixture(scope="session")
def spark():
    """The one Spark session of the test run; the assets' LazyPySparkResource reuses it."""
    from pyspark.sql import SparkSession

    spark_classes_ready()

    builder = SparkSession.builder
    for key, value in {**spark_config("local[2]"), "spark.app.name": "shopsmart-tests"}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    yield session
    session.stop()


# One PostgreSQL server for the whole test run (scripts/postgres.sh), started on first use.
pg = postgres_fixture(databases=("crm", "orders", "dagster"))


@pytest.fixture(scope="session")
def spark_connect(tmp_path_factory: pytest.TempPathFactory):
    """One Spark Connect server for the whole test run (scripts/spark.sh), however many
    workers: started by the first test that needs it, stopped by the test run's controller at
    the end (`pytest_unconfigure`). The service tests compare it with local mode, and the
    `dagster dev` tests run their Spark steps through it (a step connects in ~1 s instead of
    starting a JVM of its own)."""
    from shopsmart_assets_tests.spark_services import start_spark_connect

    return once_per_test_run(tmp_path_factory, SPARK_CONNECT, start_spark_connect)


T = TypeVar("T")


# A directory of the whole test run, made by its controller (the xdist controller, or the only
# process) before any worker starts, and shared by the workers through the environment.
RUN_DIR_VAR = "SHOPSMART_TEST_RUN_DIR"
SPARK_CONNECT = "spark-connect"
CLASS_ARCHIVE = "spark-classes.jsa"
_ARCHIVE_BUILD: list[ClassArchiveBuild] = []


def pytest_configure(config: pytest.Config) -> None:
    """The controller makes the run's directory and, for a run on several workers (`make
    test`), starts writing Spark's class archive into it; every process of the run launches
    its drivers with the options that map it. A run in one process (`TEST_WORKERS=0`, one
    module while developing) starts at once, without: the archive takes about 45 s to write."""
    if not hasattr(config, "workerinput"):
        os.environ[RUN_DIR_VAR] = tempfile.mkdtemp(prefix="shopsmart-test-run-")
        if config.getoption("numprocesses", None) and not config.option.collectonly:
            archive = Path(os.environ[RUN_DIR_VAR]) / CLASS_ARCHIVE
            _ARCHIVE_BUILD.append(ClassArchiveBuild(archive, TEST_JVM_OPTIONS))
    where = class_archive()
    driver = f"{TEST_JVM_OPTIONS} {class_archive_options(where) if where else ''}".strip()
    os.environ["PYSPARK_SUBMIT_ARGS"] = pyspark_submit_args(driver, TEST_JVM_OPTIONS)


def pytest_unconfigure(config: pytest.Config) -> None:
    """The controller stops what the workers shared, once every worker is done."""
    if hasattr(config, "workerinput") or RUN_DIR_VAR not in os.environ:
        return
    run_dir = Path(os.environ.pop(RUN_DIR_VAR))
    for build in _ARCHIVE_BUILD:
        build.stop()
    if (run_dir / f"{SPARK_CONNECT}.pickle").exists():
        from shopsmart_assets_tests.spark_services import stop_spark_connect

        stop_spark_connect(run_dir / SPARK_CONNECT)
    shutil.rmtree(run_dir, ignore_errors=True)


def once_per_test_run(
    tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], T]
) -> T:
    """`build(directory)` once for the whole test run, however many xdist workers run it: the
    first worker to need it builds it under a file lock in the run's directory, the others
    wait for it and share it (read-only). Its result is pickled."""
    common = Path(os.environ.get(RUN_DIR_VAR) or tmp_path_factory.getbasetemp())
    done = common / f"{name}.pickle"
    with FileLock(common / f"{name}.lock"):
        if not done.exists():
            directory = common / name
            directory.mkdir()
            result = build(directory)
            done.write_bytes(pickle.dumps(result))
    return pickle.loads(done.read_bytes())


@pytest.fixture(scope="session")
def local_chain(tmp_path_factory: pytest.TempPathFactory):
    """The daily chain for two days through the `dagster` command line in local mode, once
    per test run (on any number of workers): the operations tests inspect its runs, the
    service tests and the DuckDB cross-check compare their lakes with it."""
    from shopsmart_assets_tests.spark_services import run_local_chain

    return once_per_test_run(tmp_path_factory, "local-chain", run_local_chain)


@dataclass
class Platform:
    """A data dir with generated sources, its resources and a Dagster instance, for the
    partitions of one time zone and start date."""

    root: Path
    crm_url: str
    orders_url: str
    instance: dg.DagsterInstance
    partitions: Partitions = UTC_PARTITIONS

    @cached_property
    def assets(self) -> list[dg.AssetsDefinition]:
        return build_assets(self.partitions)

    @cached_property
    def graph(self) -> DeclaredAssetGraph:
        return DeclaredAssetGraph.of(self.assets)

    @property
    def lake(self) -> LakeResource:
        return LakeResource(root=str(self.root / "lake"), tables=lake_tables(self.assets))

    def path(self, asset: str, partition_key: str) -> Path:
        """Where a partition of an asset lies in the lake (the platform's own layer)."""
        key = dg.AssetKey.from_user_string(asset)
        return self.lake.partition_path(key, self.graph.partitions_def(key), partition_key)

    @property
    def feature_store(self) -> FeatureStoreResource:
        """Feast with its SQLite online store and file registry in this data dir."""
        lake = self.lake
        return FeatureStoreResource(
            online_store=f"sqlite:///{self.root / 'feast' / 'online_store.db'}",
            registry=str(self.root / "feast" / "registry.db"),
            repo_dir=str(self.root / "feast"),
            view_tables={
                view: str(lake.table_dir(key))
                for view, key in feast_view_assets(self.assets).items()
            },
        )

    @property
    def model_registry(self) -> ModelRegistry:
        """MLflow tracking and registry in a SQLite store in this data dir."""
        return ModelRegistry(
            tracking_uri=f"sqlite:///{self.root / 'mlflow' / 'mlflow.db'}",
            artifact_location=(self.root / "mlflow" / "artifacts").as_uri(),
        )

    def resources(self, **overrides: object) -> dict[str, object]:
        from dagster_pyspark import LazyPySparkResource

        return {
            "crm_db": SourceDatabase(name="crm", url=self.crm_url),
            "orders_db": SourceDatabase(name="orders", url=self.orders_url),
            "lake": self.lake,
            "pyspark": LazyPySparkResource(spark_config=spark_config("local[2]")),
            "feature_store": self.feature_store,
            "model_registry": self.model_registry,
            "promotion_policy": PromotionPolicy(),
            **overrides,
        }

    def generate(self, first_day: date, days: int, orders_per_day: int, seed: int = 11) -> None:
        """Whole local days of demo data from `first_day` (23, 24 or 25 hours each)."""
        crm, orders = sa.create_engine(self.crm_url), sa.create_engine(self.orders_url)
        create_sources(crm, orders)
        zone = self.partitions.timezone
        first = local_midnight(first_day, zone)
        # whole local days; a day of a half-hour shift ends half-way through a UTC hour
        hours = math.ceil((local_midnight(first_day, zone, days) - first).total_seconds() / 3600)
        config = DemoConfig(seed=seed, orders_per_day=orders_per_day, timezone=zone)
        generate(crm, orders, first, hours, config)

    def materialize(
        self,
        selection: Sequence[str],
        first: str,
        last: str | None = None,
        raise_on_error: bool = True,
        **resource_overrides: object,
    ) -> dg.ExecuteInProcessResult:
        """Materialize `selection` for partitions first..last in one run (single-run range)."""
        return dg.materialize(
            self.assets,
            selection=list(selection),
            instance=self.instance,
            resources=self.resources(**resource_overrides),
            tags=range_tags(first, last or first),
            raise_on_error=raise_on_error,
        )

    def hours(self, first: date, last: date | None = None) -> tuple[str, str]:
        """The first and last hourly partition keys of the days first..last."""
        return (
            self.partitions.hours_of_day(str(first))[0],
            self.partitions.hours_of_day(str(last or first))[-1],
        )

    def run_backfill(self, partitions: dict[str, list[str]]) -> int:
        """Execute a backfill's partitions as the backfill daemon plans them: assets in
        dependency order, each contiguous range of partitions one run, consecutive assets with
        the same partitions together; returns the number of runs."""
        runs, group, group_keys = 0, [], None
        for key in [k.to_user_string() for k in self.graph.keys]:
            keys = partitions.get(key)
            if not keys:
                continue
            if group and keys != group_keys:
                runs += self._run_ranges(group, group_keys)
                group = []
            group.append(key)
            group_keys = keys
        if group:
            runs += self._run_ranges(group, group_keys)
        return runs

    def _run_ranges(self, assets: list[str], keys: list[str]) -> int:
        partitions_def = self.graph.partitions_def(dg.AssetKey.from_user_string(assets[0]))
        subset = partitions_def.subset_with_partition_keys(keys)
        ranges = subset.get_partition_key_ranges(partitions_def)
        for key_range in ranges:
            self.materialize(assets, key_range.start, key_range.end)
        return len(ranges)

    def materialize_days(self, first: date, last: date, raise_on_error: bool = True):
        """The whole chain for a range of days: hourly orders first, then the daily chain."""
        self.materialize(HOURLY, *self.hours(first, last))
        return self.materialize(DAILY, str(first), str(last), raise_on_error=raise_on_error)


def repository_of(defs: dg.Definitions) -> dg.RepositoryDefinition:
    """The definitions' repository, resolved under a live test instance: resolving reads the
    current instance's state storage, which a test that ended before may have left behind
    disposed (fixtures are not always torn down in the order they were set up)."""
    with dg.instance_for_test():
        return defs.get_repository_def()


def run_failure_context(instance: dg.DagsterInstance, run_id: str) -> dg.RunFailureSensorContext:
    """What the run-failure sensor (the Slack alert) is given for a failed run."""
    run = instance.get_run_by_id(run_id)
    [failure] = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    return dg.build_run_status_sensor_context(
        sensor_name="slack_on_run_failure",
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=failure.dagster_event,
    ).for_run_failure()


def draw_examples(count: int, example: Callable[..., T], **strategies) -> list[T]:
    """Up to `count` examples of the hypothesis `strategies`, drawn before any is checked, each
    built by `example` (which may `assume`): for tests that check many examples in one Spark
    job instead of one job per example."""
    from hypothesis import given, settings

    examples: list[T] = []

    @settings(max_examples=count, deadline=None, database=None)
    @given(**strategies)
    def draw(**values) -> None:
        examples.append(example(**values))

    draw()
    return examples


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=k) for k in range((last - first).days + 1)]


def platform_at(
    root: Path, instance: dg.DagsterInstance, partitions: Partitions = UTC_PARTITIONS
) -> Platform:
    return Platform(
        root=root,
        crm_url=f"sqlite:///{root / 'crm.db'}",
        orders_url=f"sqlite:///{root / 'orders.db'}",
        instance=instance,
        partitions=partitions,
    )


def generate_sources(directory: Path, days: int, orders_per_day: int, start: date = START) -> None:
    """crm.db and orders.db in `directory`, written by the `shopsmart-demo` command."""
    from shopsmart_assets.cli.demo import main as demo_main

    assert (
        demo_main(
            [
                "--crm-url",
                f"sqlite:///{directory}/crm.db",
                "--orders-url",
                f"sqlite:///{directory}/orders.db",
                "--start-date",
                str(start),
                "--days",
                str(days),
                "--orders-per-day",
                str(orders_per_day),
            ]
        )
        == 0
    )


def materialize_cli(
    env: dict[str, str], cwd: Path, *args: str, timeout: float = 900
) -> subprocess.CompletedProcess:
    """`dagster asset materialize -m shopsmart_assets.definitions ARGS`, as users run it, in
    `env` (a whole environment); fails the test with the command's output unless it succeeds."""
    dagster = Path(sys.executable).with_name("dagster")
    done = subprocess.run(
        [str(dagster), "asset", "materialize", "-m", "shopsmart_assets.definitions", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def listening_sockets() -> set[tuple[str, int, str]]:
    """(address, port, socket inode) of every TCP socket listening on this machine, from
    /proc/net/tcp{,6}; IPv4-mapped IPv6 addresses are given as IPv4."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            # the kernel prints 32-bit words in host (little-endian) order
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            ip = ipaddress.ip_address(words)
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            found.add((ip.compressed, int(port, 16), fields[9]))
    return found


def files_containing(root: Path, needle: str) -> list[Path]:
    """Every file under `root` whose bytes contain `needle` (secrets must be in none)."""
    return [f for f in root.rglob("*") if f.is_file() and needle.encode() in f.read_bytes()]


def in_memory_instance() -> dg.DagsterInstance:
    """A Dagster instance whose runs and events live in memory, for the chains a test runs in
    process and inspects through the instance's API: a SQLite instance opens its database and
    commits for every event (the 240 hourly partitions of 10 days: 15.4 → 7.9 CPU s). What a
    SQLite or PostgreSQL instance records is tested where Dagster runs as users run it
    (`dagster` commands, `dagster dev`). Use it as a context manager."""
    return dg.DagsterInstance.ephemeral()


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    with in_memory_instance() as instance:
        yield platform_at(tmp_path, instance)


@pytest.fixture(scope="module")
def module_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with in_memory_instance() as instance:
        yield platform_at(tmp_path_factory.mktemp("platform"), instance)


# `make test` runs the suite on several workers (pytest-xdist, `--dist loadfile`): each test
# module stays on one worker, so that its module fixtures are built once. The modules that
# take longest (wall time, measured) start first, so that the workers finish together: the
# Makefile turns off xdist's own ordering (`--no-loadscope-reorder`; by default it starts the
# modules with the most tests first, which left one worker running the end-to-end test, the
# crash test and the browser test alone for the last 5 minutes).
LONGEST_FIRST = (
    "test_end_to_end",
    "test_ml_chain",
    "test_spark_services",
    "test_postgres",
    "test_purchases_transform",
    "test_reliability",
    "test_crash",
    "test_duckdb_crosscheck",
    "test_ui_browser",
    "test_ui_process",
    "test_pipeline",
    "test_operations",
    "test_correctness",
    "test_retries",
    "test_lake_layout",
    "test_automation",
    "test_demo_generator",
    "test_properties",
    "test_lake",
    "test_features_transform",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        module = item.nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")
        return LONGEST_FIRST.index(module) if module in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a module is kept
