"""Shared fixtures: one local Spark session per test run, small generated sources, and a
helper that materializes partition ranges through Dagster exactly as the CLI does."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

from shopsmart_assets.definitions import all_assets  # noqa: E402
from shopsmart_assets.demo.generator import DemoConfig, create_sources, generate  # noqa: E402
from shopsmart_assets.resources import (  # noqa: E402
    LakeResource,
    OnlineStoreResource,
    PromotionPolicy,
    SourceDatabase,
)
from shopsmart_assets.resources.spark import spark_config  # noqa: E402
from shopsmart_assets_tests.postgres_server import postgres_fixture  # noqa: E402

START = date(2026, 1, 1)
HOURLY = ["raw/orders", "raw/order_items"]
DAILY = [
    "raw/crm_customers",
    "raw/crm_interactions",
    "lake/purchases",
    "features/customer_features",
    "features/online_store",
    "ml/training_set",
    "ml/purchase_model",
    "ml/champion_model",
]


@pytest.fixture(scope="session")
def spark():
    """The one Spark session of the test run; the assets' LazyPySparkResource reuses it."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    for key, value in {**spark_config("local[2]"), "spark.app.name": "shopsmart-tests"}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    yield session
    session.stop()


# One PostgreSQL server for the whole test run (scripts/postgres.sh), started on first use.
pg = postgres_fixture(databases=("crm", "orders", "dagster"))


@dataclass
class Platform:
    """A data dir with generated sources, its resources and a Dagster instance."""

    root: Path
    crm_url: str
    orders_url: str
    instance: dg.DagsterInstance

    @property
    def lake(self) -> LakeResource:
        return LakeResource(root=str(self.root / "lake"))

    def resources(self, **overrides: object) -> dict[str, object]:
        from dagster_pyspark import LazyPySparkResource

        return {
            "crm_db": SourceDatabase(name="crm", url=self.crm_url),
            "orders_db": SourceDatabase(name="orders", url=self.orders_url),
            "lake": self.lake,
            "pyspark": LazyPySparkResource(spark_config=spark_config("local[2]")),
            "online_store": OnlineStoreResource(url=f"sqlite:///{self.root / 'online.db'}"),
            "promotion_policy": PromotionPolicy(),
            **overrides,
        }

    def generate(self, first_day: date, days: int, orders_per_day: int, seed: int = 11) -> None:
        crm, orders = sa.create_engine(self.crm_url), sa.create_engine(self.orders_url)
        create_sources(crm, orders)
        first_hour = datetime(
            first_day.year, first_day.month, first_day.day, tzinfo=ZoneInfo("UTC")
        )
        generate(
            crm, orders, first_hour, 24 * days, DemoConfig(seed=seed, orders_per_day=orders_per_day)
        )

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
            all_assets,
            selection=list(selection),
            instance=self.instance,
            resources=self.resources(**resource_overrides),
            tags={
                ASSET_PARTITION_RANGE_START_TAG: first,
                ASSET_PARTITION_RANGE_END_TAG: last or first,
            },
            raise_on_error=raise_on_error,
        )

    def materialize_days(self, first: date, last: date, raise_on_error: bool = True):
        """The whole chain for a range of days: hourly orders first, then the daily chain."""
        self.materialize(HOURLY, f"{first}-00:00", f"{last}-23:00")
        return self.materialize(DAILY, str(first), str(last), raise_on_error=raise_on_error)


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=k) for k in range((last - first).days + 1)]


def platform_at(root: Path, instance: dg.DagsterInstance) -> Platform:
    return Platform(
        root=root,
        crm_url=f"sqlite:///{root / 'crm.db'}",
        orders_url=f"sqlite:///{root / 'orders.db'}",
        instance=instance,
    )


def generate_sources(directory: Path, days: int, orders_per_day: int) -> None:
    """crm.db and orders.db in `directory`, written by the `shopsmart-demo` command."""
    from shopsmart_assets.demo.cli import main as demo_main

    assert (
        demo_main(
            [
                "--crm-url",
                f"sqlite:///{directory}/crm.db",
                "--orders-url",
                f"sqlite:///{directory}/orders.db",
                "--start-date",
                str(START),
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


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    with dg.instance_for_test() as instance:
        yield platform_at(tmp_path, instance)


@pytest.fixture(scope="module")
def module_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with dg.instance_for_test() as instance:
        yield platform_at(tmp_path_factory.mktemp("platform"), instance)
