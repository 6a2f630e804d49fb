"""`shopsmart-worker POOL`: one pool of `dagster-celery` workers, in the foreground, serving the
queue its steps are sent to (`spark`: the Spark steps; `default`: every other step).

What a worker needs comes from the environment, as for every Dagster process: DAGSTER_HOME (an
instance on PostgreSQL, shared with the webserver and the daemon), the broker
(SHOPSMART_CELERY_BROKER_URL, SHOPSMART_CELERY_BACKEND_URL) and the platform's settings. The
worker imports the code location once and forks a process per step, one step per process
(a step's memory goes back to the OS with it). `make cluster` starts both pools on this
machine; the image runs one pool per container (deploy/compose.yaml).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shopsmart_assets import settings
from shopsmart_assets.defs.worker_pools import SPARK_QUEUE, STANDARD_QUEUE


@dataclass(frozen=True)
class WorkerPool:
    """A pool of Celery worker processes serving one queue."""

    name: str
    queue: str
    concurrency: int


WORKER_POOLS = (
    # One Spark step at a time: a local Spark application takes the machine's cores.
    WorkerPool("spark", SPARK_QUEUE, concurrency=1),
    WorkerPool("default", STANDARD_QUEUE, concurrency=2),
)
POOLS = {pool.name: pool for pool in WORKER_POOLS}


def worker_config() -> str:
    """What the workers read their broker from (dagster-celery's worker config, `-y`): the
    variables the runs read too, not their values."""
    return (
        "execution:\n  config:\n"
        f"    broker:\n      env: {settings.CELERY_BROKER_URL_VAR}\n"
        f"    backend:\n      env: {settings.celery_backend_var()}\n"
    )


def worker_command(pool: WorkerPool, config: Path, concurrency: int | None = None) -> list[str]:
    """`dagster-celery worker start` for `pool`, reading its broker config from `config`."""
    return [
        str(Path(sys.executable).with_name("dagster-celery")),
        "worker",
        "start",
        "--app",
        "dagster_celery.app",
        "--config-yaml",
        str(config),
        "--queue",
        pool.queue,
        "--name",
        pool.name,
        # the code location imported once by the worker, before it forks a process per task
        "--includes",
        "shopsmart_assets.definitions",
        "--",
        "--concurrency",
        str(concurrency or pool.concurrency),
        # a step's memory (a Spark driver's, pandas frames) goes back to the OS with its task
        "--max-tasks-per-child",
        "1",
    ]


def worker_environment(env: Mapping[str, str]) -> dict[str, str]:
    """`env` for a worker: dagster-celery starts `celery` from PATH, this environment's first."""
    return {**env, "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])}


def _check(pool: WorkerPool) -> int:
    from shopsmart_assets.defs.worker_pools import CeleryUnavailable, check_worker_pools

    broker = settings.url_value(settings.CELERY_BROKER_URL_VAR, "")
    backend = settings.url_value(settings.celery_backend_var(), broker)
    try:
        check_worker_pools(broker, backend, (pool.queue,))
    except CeleryUnavailable as error:
        print(f"shopsmart-worker: {error}", file=sys.stderr)
        return 1
    print(f"shopsmart-worker: queue {pool.queue} is served")
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="shopsmart-worker", description=__doc__)
    parser.add_argument("pool", choices=sorted(POOLS))
    parser.add_argument(
        "--concurrency", type=int, default=None, help="steps at a time (default: the pool's)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="start nothing: exit 0 when a worker answers on the pool's queue, else 1 with "
        "the reason (a container's health check)",
    )
    args = parser.parse_args(argv)
    if not settings.celery_on():
        parser.error(f"{settings.CELERY_BROKER_URL_VAR} is not set: no broker to serve")
    if args.check:
        sys.exit(_check(POOLS[args.pool]))
    config = Path(tempfile.mkdtemp(prefix="shopsmart-worker-")) / "celery.yaml"
    config.write_text(worker_config())
    command = worker_command(POOLS[args.pool], config, args.concurrency)
    print(f"shopsmart-worker: pool {args.pool} on queue {POOLS[args.pool].queue}", flush=True)
    # the worker takes this process's place, and with it the signals a supervisor sends
    # (SIGTERM: Celery's warm shutdown)
    os.execve(command[0], command, worker_environment(settings.child_environment()))


if __name__ == "__main__":
    main()
