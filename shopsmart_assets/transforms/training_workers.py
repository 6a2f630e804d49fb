"""A range's models fitted in worker processes while the caller logs the days before.

A backfill trains one model per day. Fitting is scikit-learn's CPU work; logging a model to
MLflow is Python work in the step's own process. One after the other, each waits for the
other. Here spawned worker processes (nothing of the step's process inherited) read the same
training-set partitions from the lake and fit the days, one OpenMP thread each, beside the
step, which gets the outcomes back in the days' order. One day alone is fitted in the step's
process on all its threads: a worker would only add its start. So is every day on the Celery
worker pools, whose tasks run in daemonic processes (that may not start processes); the pools
run steps side by side instead.

A model does not depend on how many threads fitted it: histogram gradient boosting splits
its work by feature, not by row (`test_ml_chain.py` rebuilds registered versions in one
process and compares their predictions exactly).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from shopsmart_assets.transforms.training import TrainingOutcome, split_window, train_and_evaluate

# A worker process's examples, read once when it starts (`_read_examples`).
_examples: pd.DataFrame | None = None


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


def _read_examples(paths: Mapping[str, Path]) -> None:
    """A worker's start: read the examples the step read (the same partition directories,
    in the same order; a path, unlike a frame, is cheap to send), and fit on one thread (the
    step's process and the other workers have the other cores)."""
    global _examples
    from shopsmart_assets.lake.frames import read_parquet_dirs

    _examples = read_parquet_dirs(paths)
    import sklearn.ensemble  # noqa: F401  (loads the OpenMP runtime the limit applies to)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _fit(window: Sequence[str], key: str) -> TrainingOutcome:
    assert _examples is not None, "a training worker starts with its examples"
    return train_and_evaluate(*split_window(_examples, window, key))


def fitted_in_order(
    examples: pd.DataFrame,
    paths: Mapping[str, Path],
    windows: Mapping[str, Sequence[str]],
    cores: int | None = None,
) -> Iterator[tuple[str, TrainingOutcome]]:
    """(day, its model's outcome) for each day of `windows` (day → the training-set
    partitions of its window, the day included), in that order. `examples` are the
    partitions `paths` holds (`read_parquet_dirs`). The days' models are fitted in worker
    processes while the caller handles the ones before; a failed fit raises here, at its
    day, and cancels the days after."""
    workers = worker_count(
        len(windows),
        available_cores() if cores is None else cores,
        daemonic=multiprocessing.current_process().daemon,
    )
    if not workers:
        for key, window in windows.items():
            yield key, train_and_evaluate(*split_window(examples, window, key))
        return
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_read_examples,
        initargs=(dict(paths),),
    )
    try:
        futures: dict[str, Future[TrainingOutcome]] = {
            key: pool.submit(_fit, window, key) for key, window in windows.items()
        }
        for key, future in futures.items():
            yield key, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
