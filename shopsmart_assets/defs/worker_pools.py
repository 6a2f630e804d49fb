"""Where and how steps run: Spark steps on larger workers in the `spark` pool, the rest on
standard workers; the steps that write Feast's online store one at a time where it takes one
writer (pool `feast_online`); retries of the steps that touch a source or a service; and the
executor that sends steps where they run.

Without SHOPSMART_CELERY_BROKER_URL the steps are processes of the run's own machine (forked
from a server that imported the code location once). With it, they are Celery tasks: Spark
steps on queue `spark`, the rest on queue `default`, each queue served by its own pool of
`dagster-celery` workers (`make cluster`, docs/deployment.md). The `spark` pool's limit
(dagster.yaml) holds either way: Dagster checks it before a step is submitted. The
`dagster-k8s/config` tags are read by dagster-k8s as pod sizes and ignored here.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from shopsmart_assets import settings
from shopsmart_assets.settings import masked

SPARK_POOL = "spark"
# Celery queues, one per worker pool.
SPARK_QUEUE = "spark"
STANDARD_QUEUE = "default"
WORKER_QUEUES = (SPARK_QUEUE, STANDARD_QUEUE)
# dagster-celery's documented tag for a step's queue (dagster_celery.tags), spelled out here so
# that loading the code location does not import Celery when it is not used
DAGSTER_CELERY_QUEUE_TAG = "dagster-celery/queue"


def k8s_resources(cpu: str, memory: str) -> dict[str, Any]:
    """The `dagster-k8s/config` tag asking for a pod of this size."""
    return {
        "dagster-k8s/config": {
            "container_config": {
                "resources": {
                    "requests": {"cpu": cpu, "memory": memory},
                    "limits": {"memory": memory},
                }
            }
        }
    }


SPARK_WORKER_TAGS = {
    **k8s_resources(cpu="4", memory="16Gi"),
    "shopsmart/worker": "spark",
    DAGSTER_CELERY_QUEUE_TAG: SPARK_QUEUE,
}
STANDARD_WORKER_TAGS = {
    **k8s_resources(cpu="500m", memory="1Gi"),
    "shopsmart/worker": "standard",
    DAGSTER_CELERY_QUEUE_TAG: STANDARD_QUEUE,
}

# Keyword arguments for @asset / @multi_asset.
SPARK_STEP: dict[str, Any] = {"pool": SPARK_POOL, "op_tags": SPARK_WORKER_TAGS}
STANDARD_STEP: dict[str, Any] = {"op_tags": STANDARD_WORKER_TAGS}
# A range of partitions is one run of each asset (one Spark job, one write of Feast).
SINGLE_RUN = dg.BackfillPolicy.single_run()
# The steps that write Feast's online store (features/online_store, ml/purchase_scores).
FEAST_POOL = "feast_online"


def source_retry() -> dg.RetryPolicy:
    """Sources fail for passing reasons (restarts, network blips, lock timeouts): retry 3 times
    with exponential backoff and jitter, about 2 s, 6 s and 14 s later (each ± 2 s, for the
    default SHOPSMART_SOURCE_RETRY_DELAY of 2 s), before the step fails, the run fails and Slack
    is alerted."""
    return dg.RetryPolicy(
        max_retries=3,
        delay=settings.source_retry_delay(),
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.PLUS_MINUS,
    )


def online_store_step() -> dict[str, Any]:
    """Keyword arguments for a step that writes Feast's online store: a standard worker,
    retried with backoff when the store is locked or unreachable, and in pool `feast_online`
    where the store takes one writer at a time (SQLite; the pool's limit is 1 in dagster.yaml),
    so that two such steps never write it at once, in one run or across runs. Redis and
    PostgreSQL take several writers: no pool."""
    one_writer = {"pool": FEAST_POOL} if settings.online_store_takes_one_writer() else {}
    return {**STANDARD_STEP, **one_writer, "retry_policy": source_retry()}


# Independent steps run in parallel, each in its own process, forked from a server that has
# imported the code location once (instead of each step importing Dagster, pandas, pyarrow
# and the definitions again: seconds per step).
LOCAL_EXECUTOR = dg.multiprocess_executor.configured(
    {"start_method": {"forkserver": {"preload_modules": ["shopsmart_assets.definitions"]}}},
    name="multiprocess_forkserver",
)

# How long a run waits for the workers to answer "which queues do you serve" (Celery's
# broadcast collects replies for this long).
WORKER_REPLY_SECONDS = 1.5


class CeleryUnavailable(RuntimeError):
    """The broker cannot be reached, or no worker serves a queue the steps are sent to."""


def check_worker_pools(broker_url: str, backend_url: str, queues: tuple[str, ...]) -> None:
    """Fail at once, naming the broker (password masked), when it cannot be reached or when a
    queue has no worker: a step sent there would wait for ever."""
    from celery import Celery
    from kombu import Connection

    connection = Connection(broker_url, connect_timeout=3)
    where = masked(broker_url)
    try:
        connection.ensure_connection(max_retries=1)
    except Exception as error:  # kombu raises OperationalError, redis-py its own
        raise CeleryUnavailable(
            f"The Celery broker {where} ({settings.CELERY_BROKER_URL_VAR}) cannot be reached: "
            f"{str(error).rstrip('.')}. Start it (make cluster, or scripts/redis.sh start DIR), "
            f"or unset {settings.CELERY_BROKER_URL_VAR} to run steps on this machine."
        ) from error
    finally:
        connection.release()
    app = Celery("shopsmart-check", broker=broker_url, backend=backend_url)
    try:
        replies = app.control.inspect(timeout=WORKER_REPLY_SECONDS).active_queues() or {}
    finally:
        app.close()
    served = {queue["name"] for worker in replies.values() for queue in worker}
    missing = [queue for queue in queues if queue not in served]
    if missing:
        raise CeleryUnavailable(
            f"No Celery worker at {where} serves queue(s) {', '.join(missing)} (workers: "
            f"{', '.join(sorted(replies)) or 'none'}): start the worker pools (make cluster, or "
            "dagster-celery worker start -A dagster_celery.app -q QUEUE, docs/deployment.md)."
        )


def celery_worker_pools() -> dg.ExecutorDefinition:
    """dagster-celery's executor, created once the broker and a worker for every queue answer."""
    from dagster_celery import celery_executor

    @dg.executor(
        name="celery_worker_pools",
        config_schema=celery_executor.config_schema,
        requirements=dg.multiple_process_executor_requirements(),
    )
    def checked_celery_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
        config = init_context.executor_config
        check_worker_pools(config["broker"], config["backend"], WORKER_QUEUES)
        return celery_executor.executor_creation_fn(init_context)

    return checked_celery_executor


def step_executor() -> dg.ExecutorDefinition:
    """The executor the settings ask for: Celery worker pools when a broker is set (its URLs
    read by each run from the environment, never written into run config), else processes
    of this machine."""
    if not settings.celery_on():
        return LOCAL_EXECUTOR
    return celery_worker_pools().configured(
        {
            "broker": {"env": settings.CELERY_BROKER_URL_VAR},
            "backend": {"env": settings.celery_backend_var()},
            # steps without a queue tag (the asset checks Dagster builds) go to the standard
            # pool too, not to dagster-celery's own default queue, which no worker serves
            "config_source": {"task_default_queue": STANDARD_QUEUE},
        },
        name="celery_worker_pools",
    )
