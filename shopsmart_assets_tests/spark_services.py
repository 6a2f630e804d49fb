"""Real Spark services for the tests, started and stopped by `scripts/spark.sh`: a Spark Connect
server and a standalone cluster (one master, one worker) on free ports of 127.0.0.1, from the
installed pyspark. Also: the daily chain run with the `dagster` command line in any Spark mode,
and a row-for-row comparison of two lakes.

The fixtures never skip: Java and pyspark are what every Spark test needs anyway, so a service
that does not start is a failure (with the script's output and the log's tail), in CI or not.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from shopsmart_assets.defs.spark_step import SPARK_STEP_NAME
from shopsmart_assets.resources.spark_archive import processes_naming
from shopsmart_assets_tests.harness import DAILY, HOURLY, START, generate_sources, materialize_cli
from shopsmart_assets_tests.net import listening_sockets
from shopsmart_assets_tests.reconcile import register
from shopsmart_assets_tests.run_setup import TEST_JVM_OPTIONS, spark_classes_ready

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "spark.sh"
HOST = "127.0.0.1"
START_TIMEOUT = 240  # seconds, for a service to answer on a loaded 2-core machine
# Lake zones holding Parquet tables that must not depend on where Spark ran.
TABLE_ZONES = ("raw", "curated", "quarantine", "features")
# Examples need features as of D−7: none in the first week of history.
MAY_BE_EMPTY = {"features/training_set"}
SPARK_STEPS = (SPARK_STEP_NAME,)
# Environment that would point a run somewhere else than the run's own directories.
_FOREIGN = (
    "SHOPSMART_SPARK_MASTER",
    "SHOPSMART_SPARK_REMOTE",
    "SHOPSMART_CRM_URL",
    "SHOPSMART_ORDERS_URL",
    "SHOPSMART_ONLINE_STORE_URL",
    "SHOPSMART_FEAST_REGISTRY",
    "SHOPSMART_MLFLOW_TRACKING_URI",
    "SHOPSMART_AUTOMATION",
    "SHOPSMART_CELERY_BROKER_URL",
    "SHOPSMART_CELERY_BACKEND_URL",
    "SPARK_HOME",
)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class SparkService:
    """A running service: the URL to give the platform and its state directory."""

    url: str
    state: Path

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    def pids(self) -> list[int]:
        """The processes scripts/spark.sh started (pid files of running services)."""
        return [int(p.read_text()) for p in sorted((self.state / "pids").glob("*.pid"))]


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket process `pid` listens on."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return {(address, port) for address, port, inode in listening_sockets() if inode in inodes}


def _script(state: Path, *args: str, timeout: float = START_TIMEOUT + 60) -> str:
    env = {
        **os.environ,
        "SHOPSMART_SPARK_STATE": str(state),
        "VENV_PYTHON": sys.executable,
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_START_TIMEOUT": str(START_TIMEOUT),
        # The services' JVMs (Connect server, master, worker) run the test run's small jobs:
        # the same JIT and collector settings as the tests' own drivers (conftest.py).
        "SPARK_SUBMIT_OPTS": TEST_JVM_OPTIONS,
        "SPARK_CONNECT_JAVA_OPTIONS": TEST_JVM_OPTIONS,  # instead of the server's own collector
        "SPARK_DAEMON_JAVA_OPTS": TEST_JVM_OPTIONS,
    }  # the script sets SPARK_HOME (the installed pyspark) and its own empty SPARK_CONF_DIR
    done = subprocess.run(
        ["bash", str(SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        pytest.fail(f"scripts/spark.sh {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def processes_of(state: Path) -> list[tuple[int, str]]:
    """Processes whose command line names `state`: the JVMs started with its conf directory on
    their class path (servers, master, worker and the executors the worker launched)."""
    return processes_naming(str(state))


def _assert_all_gone(state: Path) -> None:
    deadline = time.monotonic() + 30
    while (left := processes_of(state)) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid, _ in left:  # started by this module: ours to end, by pid
        os.kill(pid, 9)
    assert not left, f"still running after scripts/spark.sh stopped its services: {left}"


def start_spark_connect(state: Path) -> SparkService:
    """`scripts/spark.sh connect-up PORT`: a Spark Connect server on a free port."""
    port = free_port()
    try:
        _script(state, "connect-up", str(port))
    except BaseException:
        stop_spark_connect(state)
        raise
    return SparkService(url=f"sc://{HOST}:{port}", state=state)


def stop_spark_connect(state: Path) -> None:
    """`scripts/spark.sh connect-down`; nothing of the server runs afterwards."""
    _script(state, "connect-down", timeout=120)
    _assert_all_gone(state)


@contextmanager
def spark_standalone_cluster(state: Path) -> Iterator[SparkService]:
    """`scripts/spark.sh cluster-up PORT WEBUI WORKER_WEBUI` … `cluster-down`: a master and one
    worker (2 cores, 2 GiB), ready when the worker has registered."""
    port, webui, worker_webui = free_port(), free_port(), free_port()
    try:
        _script(state, "cluster-up", str(port), str(webui), str(worker_webui))
        yield SparkService(url=f"spark://{HOST}:{port}", state=state)
    finally:
        _script(state, "cluster-down", timeout=120)
        _assert_all_gone(state)


@pytest.fixture(scope="class")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkService]:
    """A standalone Spark cluster for the tests of one class."""
    with spark_standalone_cluster(tmp_path_factory.mktemp("spark-cluster")) as service:
        yield service


def platform_env(data_dir: Path, home: Path, **spark: str) -> dict[str, str]:
    """The environment of a `dagster` process: its own data dir and instance, UTC partitions
    from the tests' start date, and the Spark settings given (none: local mode)."""
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN}
    env.update(
        DAGSTER_HOME=str(home),
        SHOPSMART_DATA_DIR=str(data_dir),
        SHOPSMART_TIMEZONE="UTC",
        SHOPSMART_START_DATE="2026-01-01",
        SPARK_LOCAL_IP=HOST,
        PYSPARK_PYTHON=sys.executable,
        **spark,
    )
    return env


def materialize(env: dict[str, str], cwd: Path, selection: Sequence[str], partitions: str) -> None:
    """`dagster asset materialize` of a partition range, as users run it."""
    materialize_cli(env, cwd, "--select", ",".join(selection), "--partition-range", partitions)


@dataclass
class ChainRun:
    """A data dir and Dagster instance in which the daily chain ran."""

    root: Path
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def lake(self) -> Path:
        return self.root / "data" / "lake"

    @property
    def home(self) -> Path:
        return self.root / "home"

    def step_seconds(self) -> dict[str, float]:
        """Duration of each Spark step of the daily run, from the Dagster event log."""
        instance = dg.DagsterInstance.from_config(str(self.home))
        try:
            [run] = [
                r
                for r in instance.get_runs()
                if "lake/purchases" in {k.to_user_string() for k in r.asset_selection or ()}
            ]
            times: dict[str, dict[dg.DagsterEventType, float]] = {}
            for kind in (dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS):
                for event in instance.all_logs(run.run_id, of_type=kind):
                    step = event.dagster_event.step_key if event.dagster_event else None
                    times.setdefault(step, {})[kind] = event.timestamp
        finally:
            instance.dispose()
        return {
            step: round(
                times[step][dg.DagsterEventType.STEP_SUCCESS]
                - times[step][dg.DagsterEventType.STEP_START],
                2,
            )
            for step in SPARK_STEPS
        }


def run_chain(
    root: Path,
    sources: Path,
    hourly: Sequence[str],
    daily: Sequence[str],
    first: date,
    last: date,
    raw_orders_from: Path | None = None,
    instance_config: Path = ROOT / "dagster.yaml",
    **spark: str,
) -> ChainRun:
    """The daily chain for first..last in its own data dir and instance, from a copy of the
    sources. The hourly order extraction (no Spark) runs too, unless `raw_orders_from` is a lake
    whose raw orders and items are copied instead."""
    run = ChainRun(root)
    run.home.mkdir(parents=True)
    shutil.copy(instance_config, run.home / "dagster.yaml")
    shutil.copytree(sources, root / "data" / "sources")
    env = platform_env(root / "data", run.home, **spark)
    if raw_orders_from is None:
        started = time.monotonic()
        materialize(env, root, hourly, f"{first}-00:00...{last}-23:00")
        run.seconds["hourly"] = round(time.monotonic() - started, 1)
    else:
        for table in ("orders", "order_items"):
            shutil.copytree(raw_orders_from / "raw" / table, run.lake / "raw" / table)
    spark_classes_ready()
    started = time.monotonic()
    materialize(env, root, daily, f"{first}...{last}")
    run.seconds["daily"] = round(time.monotonic() - started, 1)
    return run


@dataclass(frozen=True)
class LocalChain:
    """The daily chain for two days through the `dagster` command line in local mode, with the
    sources it ran on: the reference the service runs are compared with, and what the
    operations tests inspect."""

    sources: Path
    run: ChainRun
    first: date
    last: date


def run_local_chain(root: Path) -> LocalChain:
    """Two days of demo sources and the whole chain on them in local mode, in `root` (the
    `local_chain` fixture of conftest.py, shared by the test run)."""
    sources = root / "sources"
    sources.mkdir(parents=True)
    generate_sources(sources, days=2, orders_per_day=2000)
    last = START + timedelta(days=1)
    run = run_chain(root / "local", sources, HOURLY, DAILY, START, last)
    return LocalChain(sources, run, START, last)


def parquet_tables(lake: Path) -> dict[str, Path]:
    """`zone/table` → directory, for every table of the zones that hold Parquet tables."""
    return {
        f"{zone}/{table.name}": table
        for zone in TABLE_ZONES
        if (lake / zone).is_dir()
        for table in sorted((lake / zone).iterdir())
        if table.is_dir()
    }


def _partitions(table: Path) -> set[str]:
    """The partitions the table's current version lists."""
    actions = pa.table(DeltaTable(str(table)).get_add_actions(flatten=True))
    return {str(Path(f).parent) for f in actions.column("path").to_pylist()}


def _files(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()}


def assert_same_lake(expected: Path, actual: Path, spark_only: bool = False) -> dict[str, int]:
    """Every Delta table of `actual` holds exactly the rows of `expected` in its current
    version (order-independent, duplicates counted), with the same schema and partitions, and
    only Parquet files beside its log; every model record of `expected` exists in `actual`.
    With `spark_only`, `actual` holds only what the Spark assets and their inputs write.
    Returns the rows of each table."""
    tables = parquet_tables(expected)
    if spark_only:
        assert set(parquet_tables(actual)) <= set(tables)
        tables = {name: tables[name] for name in parquet_tables(actual)}
    else:
        assert set(parquet_tables(actual)) == set(tables)
    assert {"raw/orders", "curated/purchases", "quarantine/purchases"} <= set(tables)
    assert "features/customer_features" in tables
    rows = {}
    db = duckdb.connect()
    for name, table in tables.items():
        other = actual / name
        partitions = _partitions(table)
        assert partitions and partitions == _partitions(other), name
        strays = [
            f
            for f in other.rglob("*")
            if f.is_file() and f.suffix != ".parquet" and "_delta_log" not in f.parts
        ]
        assert not strays, f"{name}: files that are not Parquet: {strays[:5]}"
        register(db, "a", table)
        register(db, "b", other)
        schema = db.execute("DESCRIBE SELECT * FROM a").fetchall()
        assert db.execute("DESCRIBE SELECT * FROM b").fetchall() == schema, name
        [(count,)] = db.execute("SELECT count(*) FROM a").fetchall()
        [(other_count,)] = db.execute("SELECT count(*) FROM b").fetchall()
        assert other_count == count, (name, count, other_count)
        assert count > 0 or name in MAY_BE_EMPTY, f"{name} is empty"
        for x, y in (("a", "b"), ("b", "a")):
            difference = f"SELECT * FROM {x} EXCEPT ALL SELECT * FROM {y}"
            [(extra,)] = db.execute(f"SELECT count(*) FROM ({difference})").fetchall()
            assert extra == 0, f"{name}: {extra} rows of {x} are not in {y}"
        rows[name] = count
    if not spark_only:
        for model_table in ("models/purchase_model", "models/champion_model"):
            assert _partitions(expected / model_table) <= _partitions(actual / model_table)
    return rows


PROBE = """
import json, sys, time
started = time.perf_counter()
from shopsmart_assets.resources.spark import spark_resource
resource = spark_resource()
spark = resource.spark_session
session = time.perf_counter()
[(total,)] = spark.range(1000).selectExpr("sum(id)").collect()
query = time.perf_counter()
from pyspark import SparkContext
jvm = SparkContext._gateway is not None
pid = spark._jvm.java.lang.ProcessHandle.current().pid() if jvm else None
maps = open(f"/proc/{pid}/maps").read().splitlines() if jvm else []
print(json.dumps({
    "session_s": round(session - started, 2),
    "first_query_s": round(query - session, 2),
    "total_s": round(query - started, 2),
    "sum": total,
    "session_type": type(spark).__module__,
    "jvm_in_process": jvm,
    # class data sharing archives the driver's JVM maps (the JDK's own, and Spark's)
    "archives_mapped": sorted({line.split()[-1] for line in maps if line.endswith(".jsa")}),
}))
"""


def spark_start_cost(cwd: Path, **spark: str) -> dict[str, object]:
    """In a fresh process, as a Dagster step starts: seconds to get the platform's Spark session
    (its `spark_resource()` under the given settings) and to run a trivial query."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=cwd,
        env=platform_env(cwd / "data", cwd / "home", **spark),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
