"""Operating the pipeline from the command line, as its users do: a date range of the Spark
chain with `dagster asset materialize --partition-range` is one run with one step per asset,
independent steps run in parallel, and steps ask for the workers they need."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from shopsmart_assets.definitions import build_definitions
from shopsmart_assets.defs.spark_step import SPARK_STEP_NAME
from shopsmart_assets.defs.worker_pools import SPARK_POOL
from shopsmart_assets_tests import reconcile, spark_services
from shopsmart_assets_tests.conftest import START, generate_sources, repository_of

ROOT = Path(__file__).resolve().parents[1]
DAYS = [START + timedelta(days=k) for k in range(2)]


@pytest.fixture(scope="module")
def cli_runs(local_chain: spark_services.LocalChain) -> Iterator[tuple[Path, dg.DagsterInstance]]:
    instance = dg.DagsterInstance.from_config(str(local_chain.run.home))
    yield local_chain.run.root, instance
    instance.dispose()


def step_times(instance: dg.DagsterInstance, run_id: str, kind: dg.DagsterEventType) -> dict:
    return {
        e.dagster_event.step_key: e.timestamp
        for e in instance.all_logs(run_id, of_type=kind)
        if e.dagster_event and e.dagster_event.step_key
    }


@pytest.mark.spark
def test_a_range_of_the_spark_chain_is_one_run_with_one_spark_step(cli_runs):
    root, instance = cli_runs
    runs = instance.get_runs()
    assert len(runs) == 2  # the hourly extraction and the daily chain, nothing per day
    daily = next(
        r for r in runs if "lake/purchases" in {k.to_user_string() for k in r.asset_selection}
    )
    assert daily.tags["dagster/asset_partition_range_start"] == str(DAYS[0])
    assert daily.tags["dagster/asset_partition_range_end"] == str(DAYS[-1])
    starts = [
        e.dagster_event.step_key
        for e in instance.all_logs(daily.run_id, of_type=dg.DagsterEventType.STEP_START)
    ]
    # purchases and features in one Spark step (one Spark session) for the whole range
    assert starts.count(SPARK_STEP_NAME) == 1
    materialized = [
        (e.dagster_event.asset_key.to_user_string(), e.dagster_event.partition)
        for e in instance.all_logs(daily.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    ]
    for day in DAYS:
        assert ("lake/purchases", str(day)) in materialized
        assert ("features/customer_features", str(day)) in materialized
        reconcile.assert_lake_reconciles(
            root / "data" / "lake",
            root / "data/sources/crm.db",
            root / "data/sources/orders.db",
            day,
        )


@pytest.mark.spark
def test_independent_extractions_run_in_parallel(cli_runs):
    _, instance = cli_runs
    daily = next(
        r
        for r in instance.get_runs()
        if "lake/purchases" in {k.to_user_string() for k in r.asset_selection}
    )
    # both step processes were up before either step finished (the extracts themselves may
    # take less time than a process takes to start)
    running = step_times(instance, daily.run_id, dg.DagsterEventType.STEP_WORKER_STARTED)
    started = step_times(instance, daily.run_id, dg.DagsterEventType.STEP_START)
    finished = step_times(instance, daily.run_id, dg.DagsterEventType.STEP_SUCCESS)
    a, b = "raw__crm_customers", "raw__crm_interactions"
    assert running[a] < finished[b] and running[b] < finished[a], (running, finished)
    # and Spark waits for both
    assert started[SPARK_STEP_NAME] >= max(finished[a], finished[b])


def test_spark_steps_use_the_spark_pool_and_bigger_workers():
    assets = repository_of(build_definitions()).assets_defs_by_key
    spark_assets = {"lake/purchases", "features/customer_features"}
    for key, assets_def in assets.items():
        op = assets_def.op
        k8s = json.loads(op.tags["dagster-k8s/config"])  # Dagster stores dict tags as JSON
        requests = k8s["container_config"]["resources"]["requests"]
        if key.to_user_string() in spark_assets:
            assert op.pool == SPARK_POOL
            assert op.tags["shopsmart/worker"] == "spark"
            assert requests == {"cpu": "4", "memory": "16Gi"}
        else:
            assert op.pool is None, key
            assert op.tags["shopsmart/worker"] == "standard"
            assert requests == {"cpu": "500m", "memory": "1Gi"}


def test_instance_config_limits_spark_and_retries_crashed_runs(tmp_path):
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    code = (
        "import json, dagster as dg; i = dg.DagsterInstance.get();"
        "c = i.get_concurrency_config();"
        "print(json.dumps([c.pool_config.default_pool_limit, i.run_retries_enabled,"
        " i.run_retries_max_retries, i.run_retries_retry_on_asset_or_op_failure,"
        " i.run_monitoring_enabled, type(i.run_coordinator).__name__]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [1, True, 1, False, True, "QueuedRunCoordinator"]


def test_two_runs_of_the_same_partition_at_once_leave_it_whole(tmp_path):
    """Two `dagster asset materialize` processes for the same partition, started together:
    both finish, and the partition is exactly what one clean run writes."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    sources = tmp_path / "data" / "sources"
    generate_sources(sources, days=1, orders_per_day=20000)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SHOPSMART_DATA_DIR": str(tmp_path / "data"),
        "SHOPSMART_TIMEZONE": "UTC",
        "SHOPSMART_START_DATE": str(START),
    }
    # the instance exists already, as it always does outside a first-ever start
    dg.DagsterInstance.from_config(str(home)).dispose()
    dagster = Path(sys.executable).with_name("dagster")
    command = [
        str(dagster),
        "asset",
        "materialize",
        "-m",
        "shopsmart_assets.definitions",
        "--select",
        "raw/crm_customers",
        "--partition",
        str(START),
    ]
    runs = [
        subprocess.Popen(
            command,
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    [(landed,)] = reconcile.lake_sql(
        tmp_path / "data" / "lake",
        f"SELECT count(*) FROM read_parquet('LAKE/raw/crm_customers/date={START}/*.parquet')",
    )
    with reconcile.sources(sources / "crm.db", sources / "orders.db") as db:
        [(expected,)] = db.execute(
            "SELECT count(*) FROM crm.customers WHERE signup_at < ?", (f"{DAYS[1]} 00:00:00",)
        ).fetchall()
    assert landed == expected > 100_000
