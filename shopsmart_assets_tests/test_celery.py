"""The chain's steps on Celery worker pools: a real Redis broker (scripts/redis.sh, one per test
run), Dagster's instance on the run's PostgreSQL server (scripts/postgres.sh), and the two pools
of `dagster-celery` workers, `spark` and `default`, each its own process group
(scripts/shopsmart_cluster.py, what `make cluster` starts).

What it shows: every Spark step ran on a `spark` worker and every other step on a `default`
one, read from the event log; the lake equals the local-mode run's row for row and reconciles
with the sources; a worker killed (kill -9) in the middle of the Spark step fails the run,
alerts on Slack and publishes nothing half, and the re-run reconciles; a stopped broker, or a
queue no worker serves, fails a run at once with the broker's URL, never a hang.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from shopsmart_cluster import POSTGRES_INSTANCE_CONFIG, prepare_home, redis_server, worker_pools

from shopsmart_assets import settings
from shopsmart_assets.cli.devserver import dagster_dev, free_port
from shopsmart_assets.cli.run_report import step_placements
from shopsmart_assets.defs.automation.alerts import WILL_RETRY_TAG
from shopsmart_assets.defs.spark_step import SPARK_STEP_NAME
from shopsmart_assets.defs.worker_pools import (
    SPARK_POOL,
    SPARK_QUEUE,
    STANDARD_QUEUE,
    WORKER_QUEUES,
    CeleryUnavailable,
    check_worker_pools,
)
from shopsmart_assets.demo.slack_stand_in import SlackServer
from shopsmart_assets_tests import reconcile
from shopsmart_assets_tests.harness import DAILY, HOURLY, START
from shopsmart_assets_tests.postgres_server import PostgresServer
from shopsmart_assets_tests.reconcile import register
from shopsmart_assets_tests.spark_services import (
    LocalChain,
    assert_same_lake,
    platform_env,
    run_chain,
)
from shopsmart_assets_tests.test_crash import (
    assert_no_debris_in_tables,
    events,
    kill_tree,
    launch_purchases,
    output_files,
    wait_for,
)

pytestmark = [pytest.mark.postgres, pytest.mark.spark, pytest.mark.e2e]

LAST = START + timedelta(days=1)
TOKEN = "xoxb-celery-secret-1357924680"
PURCHASES = ("curated/purchases", "quarantine/purchases")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Redis server for the test run (the Celery tests are one module)."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="module")
def cluster_env(pg: PostgresServer, broker: str) -> dict[str, str]:
    """What every process of the cluster gets: the instance database and the broker."""
    pg.create_database("dagster_celery")
    return {
        **pg.dagster_env("dagster_celery"),
        settings.CELERY_BROKER_URL_VAR: broker,
    }


@contextmanager
def pools_for(root: Path, extra: dict[str, str]) -> Iterator[Path]:
    """Both worker pools for the platform whose data dir is root/data; yields their home."""
    home = root / "workers"
    prepare_home(home)
    with worker_pools(platform_env(root / "data", home, **extra), home):
        yield home


@contextmanager
def instance_at(home: Path, extra: dict[str, str]) -> Iterator[dg.DagsterInstance]:
    with settings.changed_environment(extra), dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def reconciles(lake: Path, data: Path) -> None:
    for day in (START, LAST):
        sources = data / "sources"
        reconcile.assert_lake_reconciles(lake, sources / "crm.db", sources / "orders.db", day)


def test_the_daily_chain_on_the_worker_pools_equals_local_mode(
    local_chain: LocalChain,
    cluster_env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path / "celery"
    with pools_for(root, cluster_env):
        run = run_chain(
            root,
            local_chain.sources,
            HOURLY,
            DAILY,
            START,
            LAST,
            instance_config=POSTGRES_INSTANCE_CONFIG,
            **cluster_env,
        )
    rows = assert_same_lake(local_chain.run.lake, run.lake)
    reconciles(run.lake, root / "data")

    with instance_at(run.home, cluster_env) as instance:
        runs = instance.get_runs()
        assert len(runs) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        seen: dict[str, tuple[str, str]] = {}
        for r in runs:
            placements = step_placements(instance, r.run_id)
            succeeded = {
                e.step_key for e in events(instance, r.run_id, dg.DagsterEventType.STEP_SUCCESS)
            }
            # every step of the run went through Celery, and ran outside the run's process
            assert {p.step for p in placements} == succeeded, (placements, succeeded)
            [orchestrator] = {
                e.dagster_event.pid
                for e in events(instance, r.run_id, dg.DagsterEventType.RUN_START)
            }
            for p in placements:
                assert p.pid is not None and p.pid != orchestrator, p
                seen[p.step] = (p.queue, p.worker.split("@")[0])
    assert seen.pop(SPARK_STEP_NAME) == (SPARK_QUEUE, "spark")
    assert seen and set(seen.values()) == {(STANDARD_QUEUE, "default")}, seen
    with capsys.disabled():
        print(f"\n[celery] steps on the default pool: {sorted(seen)}; lake rows = local: {rows}")
        print(f"[celery] chain seconds on Celery {run.seconds}, local {local_chain.run.seconds}")


def test_a_worker_killed_mid_spark_step_fails_alerts_publishes_nothing_and_a_rerun_reconciles(
    local_chain: LocalChain, cluster_env: dict[str, str], tmp_path: Path
) -> None:
    data, home = tmp_path / "data", tmp_path / "workers"
    lake = data / "lake"
    shutil.copytree(local_chain.sources, data / "sources")
    # the raw zone as the hourly and daily extracts left it: what the Spark step reads
    shutil.copytree(local_chain.run.lake / "raw", lake / "raw")
    with SlackServer(TOKEN) as slack:
        extra = {
            **cluster_env,
            "SLACK_BOT_TOKEN": TOKEN,
            "SHOPSMART_SLACK_API_URL": slack.url,
            "SHOPSMART_SLACK_CHANNEL": "#celery-alerts",
            "SHOPSMART_UI_URL": "http://ui.shopsmart.test",
            "SHOPSMART_SENSOR_INTERVAL_SECONDS": "5",
        }
        env = platform_env(data, home, **extra)
        with (
            pools_for(tmp_path, extra),
            dagster_dev(home, env=env) as url,
            instance_at(home, cluster_env) as instance,
        ):
            run_id = launch_purchases(url, START, LAST)
            [start] = wait_for(
                lambda: [
                    e
                    for e in events(instance, run_id, dg.DagsterEventType.STEP_START)
                    if e.step_key == SPARK_STEP_NAME
                ],
                timeout=240,
                poll=0.2,
                what=f"{SPARK_STEP_NAME} to start on a worker",
            )
            # the Celery executor holds the `spark` pool's slot for the step, as the local one
            pool = instance.event_log_storage.get_concurrency_info(SPARK_POOL)
            assert [(c.run_id, c.step_key) for c in pool.claimed_slots] == [
                (run_id, SPARK_STEP_NAME)
            ]
            wait_for(lambda: output_files(lake), timeout=180, poll=0.05, what="the Spark write")
            killed = kill_tree(start.dagster_event.pid)
            assert any("java" in command for command in killed.values()), killed

            failed = run_end(instance, run_id, 180, "the run to end after its worker was killed")
            assert failed.status == dg.DagsterRunStatus.FAILURE
            [message] = slack.wait_for_messages(1, timeout=120)
            assert f"/runs/{run_id}" in message["text"] and message["channel"] == "#celery-alerts"
            # nothing published, half or whole: no partition of the purchases exists
            for table in PURCHASES:
                assert not list((lake / table).glob("date=*")), table

            # A re-run on the live workers (the daemon's automatic retry, when Dagster decided
            # on one, else a new launch): whole, and equal to the local run.
            will_retry = wait_for(
                lambda: instance.get_run_by_id(run_id).tags.get(WILL_RETRY_TAG),
                timeout=60,
                poll=0.5,
                what="Dagster's decision on a retry",
            )
            rerun_id = (
                wait_for(
                    lambda: instance.get_run_by_id(run_id).tags.get("dagster/auto_retry_run_id"),
                    timeout=120,
                    poll=0.5,
                    what="the automatic retry",
                )
                if will_retry == "true"
                else launch_purchases(url, START, LAST)
            )
            rerun = run_end(instance, rerun_id, 300, "the re-run")
            assert rerun.status == dg.DagsterRunStatus.SUCCESS
            [p] = [p for p in step_placements(instance, rerun_id) if p.step == SPARK_STEP_NAME]
            assert p.worker.startswith("spark@") and p.pid != start.dagster_event.pid
            # nothing of the killed run is left claimed in the pool
            assert instance.event_log_storage.get_concurrency_info(SPARK_POOL).claimed_slots == []
    assert_no_debris_in_tables(lake)
    for table in PURCHASES:
        assert same_rows(local_chain.run.lake / table, lake / table), table
    reconciles(lake, data)


def run_end(instance: dg.DagsterInstance, run_id: str, timeout: float, what: str) -> dg.DagsterRun:
    """The run, once it has ended."""
    return wait_for(
        lambda: (r := instance.get_run_by_id(run_id)).is_finished and r,
        timeout=timeout,
        poll=0.5,
        what=what,
    )


def same_rows(expected: Path, actual: Path) -> bool:
    """The two Delta tables' current versions hold the same rows, duplicates counted."""
    db = duckdb.connect()
    register(db, "a", expected)
    register(db, "b", actual)
    [(extra,)] = db.execute(
        "SELECT count(*) FROM ((SELECT * FROM a EXCEPT ALL SELECT * FROM b) "
        "UNION ALL (SELECT * FROM b EXCEPT ALL SELECT * FROM a))"
    ).fetchall()
    [(rows,)] = db.execute("SELECT count(*) FROM a").fetchall()
    return extra == 0 and rows > 0


def test_a_stopped_broker_or_a_queue_without_workers_fails_the_run_at_once(
    broker: str, cluster_env: dict[str, str], tmp_path: Path, local_chain: LocalChain
) -> None:
    data, home = tmp_path / "data", tmp_path / "home"
    shutil.copytree(local_chain.sources, data / "sources")
    prepare_home(home)
    stopped = f"redis://127.0.0.1:{free_port()}/0"
    for url, expected in (
        (stopped, f"The Celery broker {stopped}"),
        (broker, "No Celery worker at"),  # a live broker, no worker started
    ):
        env = platform_env(data, home, **{**cluster_env, settings.CELERY_BROKER_URL_VAR: url})
        started = time.monotonic()
        done = subprocess.run(
            [str(Path(sys.executable).with_name("dagster")), "asset", "materialize",
             "-m", "shopsmart_assets.definitions", "--select", "raw/crm_customers",
             "--partition", str(START)],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        took = time.monotonic() - started
        output = done.stdout + done.stderr
        assert done.returncode != 0
        assert expected in output, output[-3000:]
        assert took < 60, took
    for table in ("crm_customers",):
        assert not (data / "lake" / "raw" / table).exists()


def test_the_broker_password_never_shows_in_the_error(tmp_path: Path) -> None:
    secret = "broker-secret-97531"
    url = f"redis://:{secret}@127.0.0.1:{free_port()}/0"
    with pytest.raises(CeleryUnavailable) as raised:
        check_worker_pools(url, url, WORKER_QUEUES)
    assert secret not in str(raised.value) and "redis://:***@127.0.0.1:" in str(raised.value)


def test_steps_name_dagster_celerys_own_queue_tag_and_celery_loads_only_when_used() -> None:
    from dagster_celery.tags import DAGSTER_CELERY_QUEUE_TAG

    from shopsmart_assets.defs.worker_pools import DAGSTER_CELERY_QUEUE_TAG as OURS

    assert OURS == DAGSTER_CELERY_QUEUE_TAG
    probe = (
        "import sys; from shopsmart_assets.definitions import defs; d = defs(); "
        "print(d.executor.name, 'celery' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPSMART_CELERY_")}
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["multiprocess_forkserver", "False"], done.stdout
