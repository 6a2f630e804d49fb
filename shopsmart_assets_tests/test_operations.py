"""Operating the pipeline from the command line, as its users do: a date range of the Spark
chain with `dagster asset materialize --partition-range` is one run with one step per asset,
independent steps run in parallel, the Spark step waits for the `spark` pool's slot, and a
run that failed for a real reason is not re-run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from shopsmart_assets.defs.automation.alerts import WILL_RETRY_TAG
from shopsmart_assets.defs.spark_step import SPARK_STEP_NAME
from shopsmart_assets.defs.worker_pools import SPARK_POOL
from shopsmart_assets.lake.delta import DeltaLakeTable
from shopsmart_assets.lake.maintenance import table_history
from shopsmart_assets_tests import reconcile, spark_services
from shopsmart_assets_tests.harness import HOURLY, START, generate_sources, platform_at

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
    # the executor launched both extracts at once, before either had finished: in one pass
    # over the steps that were ready, not one after the other
    launched = step_times(instance, daily.run_id, dg.DagsterEventType.STEP_WORKER_STARTING)
    started = step_times(instance, daily.run_id, dg.DagsterEventType.STEP_START)
    finished = step_times(instance, daily.run_id, dg.DagsterEventType.STEP_SUCCESS)
    a, b = "raw__crm_customers", "raw__crm_interactions"
    assert max(launched[a], launched[b]) < min(finished[a], finished[b]), (launched, finished)
    # and Spark waits for both
    assert started[SPARK_STEP_NAME] >= max(finished[a], finished[b])


@pytest.fixture
def project_instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """A SQLite instance with the project's own dagster.yaml, as `make ui` runs it."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(home))
    yield instance
    instance.dispose()


def pending_in_pool(instance: dg.DagsterInstance, step_key: str) -> bool:
    pool = instance.event_log_storage.get_concurrency_info(SPARK_POOL)
    return any(s.step_key == step_key and s.assigned_timestamp is None for s in pool.pending_steps)


@pytest.mark.spark
def test_the_spark_step_waits_for_the_spark_pool_slot(project_instance, tmp_path, spark):
    """With the project's instance, a run's Spark step does not start while another step
    holds the `spark` pool's one slot, and runs as soon as it is freed."""
    p = platform_at(tmp_path, project_instance)
    p.generate(START, days=1, orders_per_day=30)
    p.materialize(HOURLY, *p.hours(START))
    p.materialize(["raw/crm_customers"], str(START))
    storage = project_instance.event_log_storage
    storage.initialize_concurrency_limit_to_default(SPARK_POOL)
    held = storage.claim_concurrency_slot(SPARK_POOL, "another-run", "another_spark_step")
    assert held.slot_status.value == "CLAIMED"
    result: dict[str, dg.ExecuteInProcessResult] = {}
    run = threading.Thread(
        target=lambda: result.update(run=p.materialize(["lake/purchases"], str(START)))
    )
    run.start()
    try:
        deadline = time.monotonic() + 120
        while not pending_in_pool(project_instance, SPARK_STEP_NAME):
            assert time.monotonic() < deadline and run.is_alive(), "the step never queued"
            time.sleep(0.2)
        assert not p.path("lake/purchases", str(START)).exists()  # it waits, it does not run
    finally:
        storage.free_concurrency_slots_for_run("another-run")
        run.join(timeout=600)
    assert result["run"].success
    assert p.path("lake/purchases", str(START)).is_dir()


def test_a_run_that_failed_for_a_real_reason_is_not_run_again(project_instance, tmp_path):
    """Crashed runs are retried (test_crash.py); a run whose step failed (here: an upstream
    partition not in the lake) is not re-run blindly by the project's instance."""
    p = platform_at(tmp_path, project_instance)
    p.generate(START, days=1, orders_per_day=20)
    failed = p.materialize(["lake/purchases"], str(START), raise_on_error=False)
    assert not failed.success
    run = project_instance.get_run_by_id(failed.run_id)
    assert run.tags.get(WILL_RETRY_TAG) == "false"
    assert len(project_instance.get_runs()) == 1


def test_two_runs_of_the_same_partition_at_once_leave_it_whole(tmp_path):
    """Two `dagster asset materialize` processes for the same partition, started together:
    both finish, each run's rows are one commit of the Delta table (the later one on top of
    the other's), and the partition is exactly what one clean run writes: no file of the
    loser left in the current version, none outside the log."""
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
        f"SELECT count(*) FROM (SELECT * FROM raw__crm_customers WHERE date = '{START}')",
    )
    with reconcile.sources(sources / "crm.db", sources / "orders.db") as db:
        [(expected,)] = db.execute(
            "SELECT count(*) FROM crm.customers WHERE signup_at < ?", (f"{DAYS[1]} 00:00:00",)
        ).fetchall()
    assert landed == expected > 100_000
    table = DeltaLakeTable(tmp_path / "data" / "lake" / "raw" / "crm_customers")
    history = table_history(table, {})
    assert [row.partitions for row in history] == [[str(START)], [str(START)]]
    assert len({row.run_id for row in history}) == 2 and None not in {r.run_id for r in history}
    assert [row.version for row in history] == [1, 0]
    current = table.files()[f"date={START}"]
    first = table.files(0)[f"date={START}"]
    assert current and not set(current) & set(first)  # the later commit replaced the first
    on_disk = {str(f.relative_to(table.path)) for f in table.path.rglob("*.parquet")}
    assert on_disk == set(current) | set(first)
