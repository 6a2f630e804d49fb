"""A range's models fitted in worker processes while the caller logs the days before.

A backfill trains one model per day. Fitting is scikit-learn's CPU work; drawing a day's
sample (transforms/sampling.py) and logging its model to MLflow are Python work in the step's
own process. One after the other, each waits for the other. Here spawned worker processes
(nothing of the step's process inherited) fit the days' samples, one OpenMP thread each,
beside the step, which draws the next samples meanwhile and gets the outcomes back in the
days' order. At most one sample more than there are workers is in flight: memory holds a few
samples, whatever the days. One day alone is fitted in the step's process on all its threads:
a worker would only add its start. So is every day on the Celery worker pools, whose tasks run
in daemonic processes (that may not start processes); the pools run steps side by side
instead.

A model does not depend on how many threads fitted it: histogram gradient boosting splits
its work by feature, not by row (`test_ml_chain.py` rebuilds registered versions in one
process and compares their predictions exactly).
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor

from shopsmart_assets.transforms.sampling import WindowSample
from shopsmart_assets.transforms.training import TrainingOutcome, train_and_evaluate


def worker_count(days: int, cores: int, daemonic: bool = False) -> int:
    """Worker processes for `days` models on `cores` cores: none for one day, and none in a
    daemonic process (a Celery worker's task), which may not start any; otherwise one per
    core but the one the step logs on, at least one, at most one per day."""
    if days < 2 or daemonic:
        return 0
    return min(days, max(1, cores - 1))


def available_cores() -> int:
    """The cores this process may use (its CPU affinity and, in a container, its CPU
    quota)."""
    import joblib

    return joblib.cpu_count()


def _one_thread() -> None:
    """A worker fits on one thread: the step's process and the other workers have the
    other cores."""
    import sklearn.ensemble  # noqa: F401  (loads the OpenMP runtime the limit applies to)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def fit(sample: WindowSample) -> TrainingOutcome:
    """A day's model, fitted on its sample and evaluated on its day."""
    return train_and_evaluate(sample.train, sample.evaluation, sample.weights)


def fitted_in_order(
    samples: Iterable[tuple[str, WindowSample]], days: int, cores: int | None = None
) -> Iterator[tuple[str, WindowSample, TrainingOutcome]]:
    """(day, its sample, its model's outcome) for each of the `days` (day, sample) pairs of
    `samples` (drawn lazily, in order), in that order. The models are fitted in worker
    processes while the caller handles the ones before; a failed fit raises here, at its
    day, and cancels the days after."""
    workers = worker_count(
        days,
        available_cores() if cores is None else cores,
        daemonic=multiprocessing.current_process().daemon,
    )
    if not workers:
        for key, sample in samples:
            yield key, sample, fit(sample)
        return
    pool = ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=_one_thread
    )
    pending: deque[tuple[str, WindowSample, Future[TrainingOutcome]]] = deque()
    drawn = iter(samples)
    try:
        while True:
            # keep the workers busy, with one sample more than there are workers at most
            while len(pending) <= workers and (nxt := next(drawn, None)) is not None:
                pending.append((nxt[0], nxt[1], pool.submit(fit, nxt[1])))
            if not pending:
                return
            key, sample, future = pending.popleft()
            yield key, sample, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
