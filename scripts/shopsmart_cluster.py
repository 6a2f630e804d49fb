"""`scripts/shopsmart_cluster.py` (`make cluster`, `make cluster-demo`): the platform on Celery
worker pools on this machine, as it runs on several. A launcher of the project checkout, beside
the scripts it starts services with; the image and deploy/compose.yaml run the same services
in containers (docs/deployment.md).

The services: a Redis broker (scripts/redis.sh), Dagster's instance on PostgreSQL
(scripts/postgres.sh, dagster.postgres.yaml) and two pools of `dagster-celery` workers, `spark`
(Spark steps, one at a time) and `default` (every other step), each its own process group.
`up` adds the webserver and the daemon, so that the UI's backfills and the schedules run on the
workers, until Ctrl-C or SIGTERM; `demo` runs the daily chain of the demo's days on them once,
prints where each step ran (queue, worker, pid: read from the event log) and the
reconciliation, and stops everything. docs/deployment.md takes it to several machines.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg

from shopsmart_assets import settings
from shopsmart_assets.cli.devserver import (
    INSTANCE_CONFIG,
    dagster_dev,
    stop_group,
    stop_on_signals,
)
from shopsmart_assets.cli.run_report import failure_line, print_placements, step_placements
from shopsmart_assets.cli.spark_connect import CONNECT, LOCAL, add_spark_argument, warm_spark
from shopsmart_assets.cli.worker import (
    WORKER_POOLS,
    WorkerPool,
    worker_command,
    worker_config,
    worker_environment,
)
from shopsmart_assets.defs.worker_pools import CeleryUnavailable, check_worker_pools

SCRIPTS = Path(__file__).resolve().parent
POSTGRES_INSTANCE_CONFIG = INSTANCE_CONFIG.with_name("dagster.postgres.yaml")


WORKERS_READY_SECONDS = 180
# the workers' and the demo runs' logs, in DAGSTER_HOME
LOGS = "cluster-logs"


def _script(name: str, *args: str) -> str:
    script = SCRIPTS / name
    if not script.exists():
        raise SystemExit(f"shopsmart-cluster: {script} not found")
    done = subprocess.run([str(script), *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{name} {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def key_values(text: str) -> dict[str, str]:
    """KEY=VALUE lines as scripts/*.sh write them (values shell-quoted with printf %q)."""
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key: (shlex.split(value) or [""])[0] for key, value in pairs}


@contextmanager
def redis_server(state: Path) -> Iterator[str]:
    """A Redis server on 127.0.0.1 for the lifetime of the block; yields its URL."""
    started = key_values(_script("redis.sh", "start", str(state)))
    try:
        yield started["url"]
    finally:
        _script("redis.sh", "stop", str(state))


@contextmanager
def postgres_instance(state: Path) -> Iterator[dict[str, str]]:
    """A PostgreSQL server on 127.0.0.1 with database `dagster` for the instance; yields the
    variables dagster.postgres.yaml reads (the password only in them)."""
    _script("postgres.sh", "start", str(state), "dagster")
    try:
        server = key_values((state / "postgres.env").read_text())
        yield {
            "DAGSTER_PG_HOST": server["PGHOST"],
            "DAGSTER_PG_PORT": server["PGPORT"],
            "DAGSTER_PG_USER": server["PGUSER"],
            "DAGSTER_PG_PASSWORD": server["PGPASSWORD"],
            "DAGSTER_PG_DB": "dagster",
        }
    finally:
        _script("postgres.sh", "stop", str(state))


def prepare_home(home: Path) -> None:
    """A DAGSTER_HOME on the PostgreSQL profile, with the workers' broker config."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(POSTGRES_INSTANCE_CONFIG, home / "dagster.yaml")
    (home / "celery.yaml").write_text(worker_config())


def start_worker_pool(pool: WorkerPool, env: Mapping[str, str], home: Path) -> subprocess.Popen:
    """`dagster-celery worker start` for one pool, in its own process group, logging to
    DAGSTER_HOME/cluster-logs/worker-NAME.log."""
    logs = home / LOGS
    logs.mkdir(exist_ok=True)
    command = worker_command(pool, home / "celery.yaml")
    with open(logs / f"worker-{pool.name}.log", "ab") as log:
        return subprocess.Popen(
            command,
            cwd=home,
            env=worker_environment(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for_workers(
    broker_url: str, pools: Sequence[WorkerPool], processes: Sequence[subprocess.Popen], home: Path
) -> None:
    """Until a worker serves every queue (a worker imports Dagster first: seconds)."""
    deadline = time.monotonic() + WORKERS_READY_SECONDS
    while True:
        try:
            check_worker_pools(broker_url, broker_url, tuple(p.queue for p in pools))
            return
        except CeleryUnavailable:
            if any(p.poll() is not None for p in processes) or time.monotonic() > deadline:
                logs = home / LOGS
                raise RuntimeError(f"the worker pools did not start; see {logs}") from None
            time.sleep(1)


@contextmanager
def worker_pools(
    env: Mapping[str, str], home: Path, pools: Sequence[WorkerPool] = WORKER_POOLS
) -> Iterator[list[subprocess.Popen]]:
    """Both worker pools, running until the block ends; then each process group is stopped
    (SIGTERM: Celery's warm shutdown, then SIGKILL)."""
    processes: list[subprocess.Popen] = []
    try:
        for pool in pools:
            processes.append(start_worker_pool(pool, env, home))
        wait_for_workers(env[settings.CELERY_BROKER_URL_VAR], pools, processes, home)
        yield processes
    finally:
        for process in processes:
            stop_group(process, grace=20)


@dataclass(frozen=True)
class Cluster:
    """The running services: the environment every Dagster process of the cluster gets."""

    home: Path
    env: dict[str, str]


@contextmanager
def local_cluster(state: Path, spark: str = LOCAL) -> Iterator[Cluster]:
    """Redis, PostgreSQL and both worker pools on this machine, stopped when the block ends;
    `spark` "connect": the Spark steps on a warm Spark Connect server (`warm_spark`)."""
    home = state / "dagster_home"
    prepare_home(home)
    with ExitStack() as stack:
        spark_env = stack.enter_context(warm_spark(spark, state / "spark", "shopsmart-cluster"))
        broker = stack.enter_context(redis_server(state / "redis"))
        print(f"shopsmart-cluster: Redis broker on {broker}", flush=True)
        pg = stack.enter_context(postgres_instance(state / "postgres"))
        print(
            f"shopsmart-cluster: Dagster instance on PostgreSQL at "
            f"{pg['DAGSTER_PG_HOST']}:{pg['DAGSTER_PG_PORT']}/{pg['DAGSTER_PG_DB']}",
            flush=True,
        )
        changes = {
            "DAGSTER_HOME": str(home),
            **pg,
            settings.CELERY_BROKER_URL_VAR: broker,
            **spark_env,
        }
        env = settings.child_environment(**changes)
        # this process reads the instance too (where each step ran)
        stack.enter_context(settings.changed_environment(changes))
        stack.enter_context(worker_pools(env, home))
        pools = ", ".join(f"{p.name} (queue {p.queue}, {p.concurrency})" for p in WORKER_POOLS)
        print(f"shopsmart-cluster: worker pools up: {pools}; logs in {home / LOGS}", flush=True)
        yield Cluster(home, env)


# --- the commands ---------------------------------------------------------------------------------


def run_demo(cluster: Cluster, first: date, last: date) -> int:
    """The chain of first..last on the workers (`dagster asset materialize`, one run per group
    of assets, as `make demo` does), where each step ran, then the summary."""
    from shopsmart_assets.cli.backfill import chain_ranges

    dagster = str(Path(sys.executable).with_name("dagster"))
    for number, (keys, start, end) in enumerate(chain_ranges(first, last), 1):
        selection, partitions = ",".join(keys), f"{start}...{end}"
        log = cluster.home / LOGS / f"materialize-{number}.log"
        print(f"\nshopsmart-cluster: materializing {partitions} on the workers…", flush=True)
        started = time.monotonic()
        with open(log, "wb") as output:
            process = subprocess.Popen(
                [dagster, "asset", "materialize", "-m", "shopsmart_assets.definitions",
                 "--select", selection, "--partition-range", partitions],
                env=cluster.env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            try:
                returncode = process.wait()
            finally:
                stop_group(process)
        with dg.DagsterInstance.from_config(str(cluster.home)) as instance:
            run = next(iter(instance.get_runs(limit=1)), None)
            why = None
            if run is not None:
                seconds = time.monotonic() - started
                print(f"  run {run.run_id}: {run.status.value} in {seconds:.0f}s")
                print_placements(step_placements(instance, run.run_id))
                why = failure_line(instance, run.run_id)
        if returncode != 0 or run is None or run.status != dg.DagsterRunStatus.SUCCESS:
            # the failing step and its error in one line; the whole story in the log
            print(f"shopsmart-cluster: {why or 'the run failed'} (log: {log})", file=sys.stderr)
            return 1
    summary = subprocess.run(
        [str(Path(sys.executable).with_name("shopsmart-summary")),
         "--start", str(first), "--end", str(last)],
        env=cluster.env, check=False,
    )  # fmt: skip
    return summary.returncode


def serve(cluster: Cluster, host: str, port: int) -> int:
    """The webserver and daemon on the cluster's instance until Ctrl-C or SIGTERM."""
    with dagster_dev(
        cluster.home, port, env=cluster.env, host=host, to_terminal=True, startup_timeout=300
    ) as url:
        print(
            f"\nshopsmart-cluster: Dagster UI on {url}; steps run on the worker pools", flush=True
        )
        print("shopsmart-cluster: Ctrl-C stops everything", flush=True)
        while True:
            time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    from shopsmart_assets.cli.demo import plan_days

    parser = argparse.ArgumentParser(prog="shopsmart-cluster", description=__doc__)
    parser.add_argument("command", choices=("up", "demo"))
    parser.add_argument(
        "--state", type=Path, default=Path(".cluster"), help="services' files (default .cluster)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="up: address of the UI")
    parser.add_argument("--port", type=int, default=3000, help="up: port of the UI")
    add_spark_argument(parser, default=None)  # up: connect, demo: local
    parser.add_argument("--days", type=int, default=14, help="demo: the demo's days")
    parser.add_argument("--end-date", default="yesterday", help="demo: the last day (YYYY-MM-DD)")
    args = parser.parse_args(argv)
    stop_on_signals()
    state = args.state.resolve()
    state.mkdir(parents=True, exist_ok=True)
    try:
        spark = args.spark or (CONNECT if args.command == "up" else LOCAL)
        with local_cluster(state, spark) as cluster:
            if args.command == "up":
                return serve(cluster, args.host, args.port)
            end = (
                args.end_date if args.end_date == "yesterday" else date.fromisoformat(args.end_date)
            )
            first, last = plan_days(settings.timezone(), args.days, end, None)
            return run_demo(cluster, first, last)
    except KeyboardInterrupt:
        print("\nshopsmart-cluster: stopped; nothing left running", flush=True)
        return 0 if args.command == "up" else 130
    finally:
        print("shopsmart-cluster: services stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
