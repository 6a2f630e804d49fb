"""The same Spark assets on real Spark services: through a Spark Connect server
(SHOPSMART_SPARK_REMOTE) and on a standalone cluster (SHOPSMART_SPARK_MASTER), each started by
`scripts/spark.sh` on free ports of 127.0.0.1 and stopped afterwards. The Spark assets of the daily
chain for two days, through the `dagster` command line, must leave tables equal, row for row, to
those of a local-mode run of the whole chain; the per-step Spark start cost of each mode is
measured and printed."""

from __future__ import annotations

import errno
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from shopsmart_assets.lake.delta import DeltaLakeTable
from shopsmart_assets_tests import spark_services
from shopsmart_assets_tests.filesystems import fill, small_filesystem
from shopsmart_assets_tests.harness import HOURLY, START
from shopsmart_assets_tests.run_setup import class_archive, spark_classes_ready
from shopsmart_assets_tests.spark_services import (
    ChainRun,
    LocalChain,
    SparkService,
    assert_same_lake,
    listening_addresses,
    run_chain,
    spark_start_cost,
)

pytestmark = [pytest.mark.spark_services, pytest.mark.spark]

LAST = START + timedelta(days=1)
# The Connect server and the local-mode reference chain are shared by the test run
# (conftest.py); the cluster lives for its class (one cluster at a time on 2 cores).
spark_cluster = spark_services.spark_cluster
# What the service runs need: the Spark assets and the extracts they read (the other assets
# do not depend on where Spark runs; the local reference runs the whole chain).
SPARK_CHAIN = [
    "raw/crm_customers",
    "raw/crm_interactions",
    "lake/purchases",
    "features/customer_features",
]


def assert_loopback_only(service: SparkService, expected_processes: int) -> None:
    """The service's processes listen on 127.0.0.1 only, the URL's port among them."""
    pids = service.pids()
    assert len(pids) == expected_processes, pids
    sockets = {s for pid in pids for s in listening_addresses(pid)}
    assert ("127.0.0.1", int(service.url.rsplit(":", 1)[1])) in sockets
    assert {address for address, _ in sockets} == {"127.0.0.1"}, sockets


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    """Print a measured figure past pytest's capture, so that every run shows it."""
    with capsys.disabled():
        print(f"\n[spark services] {line}")


@pytest.fixture(scope="module")
def sources(local_chain: LocalChain) -> Path:
    """Two days of demo sources (crm.db, orders.db), copied into each run's data dir."""
    return local_chain.sources


@pytest.fixture(scope="module")
def local_run(local_chain: LocalChain) -> ChainRun:
    """The reference: hourly orders and the whole daily chain in local mode."""
    return local_chain.run


def test_the_lake_comparison_sees_a_changed_row(local_run: ChainRun, tmp_path: Path) -> None:
    """The comparison the service tests rely on fails on one changed amount."""
    changed = tmp_path / "lake"
    shutil.copytree(local_run.lake, changed)
    table = DeltaLakeTable(changed / "curated" / "purchases")
    files = [str(table.path / f) for f in table.files()[f"date={START}"]]
    edited = tmp_path / "staged" / "edited.parquet"
    edited.parent.mkdir()
    duckdb.execute(
        "COPY (SELECT * REPLACE (CASE WHEN row_number() OVER () = 1 THEN amount_usd + 0.01 "
        f"ELSE amount_usd END AS amount_usd) FROM read_parquet({files!r})) "
        f"TO '{edited}' (FORMAT parquet)"
    )
    table.commit({f"date={START}": [edited]})  # the partition, one amount changed
    with pytest.raises(AssertionError, match="curated/purchases: 1 rows"):
        assert_same_lake(local_run.lake, changed)


class TestSparkConnect:
    """SHOPSMART_SPARK_REMOTE=sc://127.0.0.1:PORT, a server started by scripts/spark.sh."""

    def test_the_daily_chain_through_connect_equals_local_mode(
        self,
        spark_connect: SparkService,
        local_run: ChainRun,
        sources: Path,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        assert_loopback_only(spark_connect, expected_processes=1)
        remote = run_chain(
            tmp_path,
            sources,
            HOURLY,
            SPARK_CHAIN,
            START,
            LAST,
            raw_orders_from=local_run.lake,
            SHOPSMART_SPARK_REMOTE=spark_connect.url,
        )
        rows = assert_same_lake(local_run.lake, remote.lake, spark_only=True)
        # the server did the work: it read the raw orders (lake/purchases) and the curated
        # purchases (features/customer_features) of this run's lake
        server_log = "".join(p.read_text(errors="replace") for p in spark_connect.logs.iterdir())
        for table in ("raw/order_items", "curated/purchases"):
            assert f"{remote.lake}/{table}/" in server_log, table
        report(capsys, f"lake rows, Connect = local: {rows}")
        report(
            capsys,
            f"chain seconds local {local_run.seconds}, Connect {remote.seconds}; Spark steps "
            f"local {local_run.step_seconds()}, Connect {remote.step_seconds()}",
        )

    def test_a_connect_step_starts_no_jvm(
        self, spark_connect: SparkService, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        spark_classes_ready()
        local = spark_start_cost(tmp_path)
        remote = spark_start_cost(tmp_path, SHOPSMART_SPARK_REMOTE=spark_connect.url)
        report(capsys, f"Spark start cost in a fresh process: local {local}")
        report(capsys, f"Spark start cost in a fresh process: Connect {remote}")
        assert local["sum"] == remote["sum"] == 499500
        assert local["jvm_in_process"] and local["session_type"] == "pyspark.sql.session"
        assert not remote["jvm_in_process"]
        assert remote["session_type"] == "pyspark.sql.connect.session"
        # the local driver maps the archive of Spark's classes the run wrote (with the function
        # `shopsmart-spark-archive` writes production's with), when the run wrote one
        archive = class_archive()
        if archive is not None and archive.exists():
            assert str(archive) in local["archives_mapped"], local["archives_mapped"]
        # How much faster a connection to a running server starts than a JVM per step is a
        # measurement, not a test: `make bench` (docs/performance.md).

    def test_a_full_lake_is_told_apart_through_connect(
        self, spark_connect: SparkService, tmp_path: Path
    ) -> None:
        """Through Spark Connect too, a write into a full lake is a storage failure the step
        fails at once on (test_lake_storage.py runs the step in local mode): the client's
        SparkException names the OS error the server's JVM met."""
        with small_filesystem(tmp_path / "lake", size_mib=16) as lake:
            fill(lake)
            script = (
                "import sys\n"
                "from pathlib import Path\n"
                "from pyspark.sql import SparkSession\n"
                "from shopsmart_assets.lake.storage_failures import os_error_of\n"
                f"spark = SparkSession.builder.remote({spark_connect.url!r}).getOrCreate()\n"
                "try:\n"
                "    spark.range(200_000).selectExpr('id', 'rand() AS r').write.parquet(\n"
                f"        {str(lake / '_staging' / 'x')!r})\n"
                "except Exception as error:\n"
                f"    print(type(error).__module__, os_error_of(error, Path({str(lake)!r})))\n"
            )
            done = subprocess.run(
                [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
            )
        assert done.stdout.split() == ["pyspark.errors.exceptions.connect", str(errno.ENOSPC)], (
            done.stdout + done.stderr[-2000:]
        )


class TestStandaloneCluster:
    """SHOPSMART_SPARK_MASTER=spark://127.0.0.1:PORT, a master and a worker started by
    scripts/spark.sh from pyspark's own spark-class."""

    def test_the_daily_chain_on_a_standalone_cluster_equals_local_mode(
        self,
        spark_cluster: SparkService,
        local_run: ChainRun,
        sources: Path,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        assert_loopback_only(spark_cluster, expected_processes=2)  # master and worker
        clustered = run_chain(
            tmp_path,
            sources,
            HOURLY,
            SPARK_CHAIN,
            START,
            LAST,
            raw_orders_from=local_run.lake,
            SHOPSMART_SPARK_MASTER=spark_cluster.url,
        )
        rows = assert_same_lake(local_run.lake, clustered.lake, spark_only=True)
        # the Spark step (purchases, then features) ran as one application of the cluster, on
        # the worker's executors
        applications = sorted((spark_cluster.state / "work").glob("app-*"))
        assert len(applications) == 1, applications
        executor_logs = "".join(
            p.read_text(errors="replace") for p in spark_cluster.state.glob("work/app-*/*/stderr")
        )
        for table in ("raw/order_items", "curated/purchases"):
            assert f"{clustered.lake}/{table}/" in executor_logs, table
        report(capsys, f"lake rows, standalone cluster = local: {rows}")
        report(
            capsys,
            f"chain seconds cluster {clustered.seconds}; "
            f"Spark steps cluster {clustered.step_seconds()}",
        )
