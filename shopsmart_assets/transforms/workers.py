"""A range's days worked on in worker processes, beside the step, in the days' order.

A backfill step handles one day after another: fitting a model per day, scoring a day's
customers. Here spawned worker processes (nothing of the step's process inherited) take the
days while the step's own process handles the results of the days before, in order. At most
one day more than there are workers is in flight: memory holds a few days' work, whatever the
range. One day alone is handled in the step's process: a worker would only add its start. So
is every day on the Celery worker pools, whose tasks run in daemonic processes (that may not
start processes); the pools run steps side by side instead.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def worker_count(days: int, cores: int, daemonic: bool = False, spare: int = 1) -> int:
    """Worker processes for `days` days on `cores` cores: none for one day, and none in a
    daemonic process (a Celery worker's task), which may not start any; otherwise one per
    core but the `spare` ones the step's own process works on, at least one, at most one per
    day."""
    if days < 2 or daemonic:
        return 0
    return min(days, max(1, cores - spare))


def available_cores() -> int:
    """The cores this process may use (its CPU affinity and, in a container, its CPU
    quota)."""
    import joblib

    return joblib.cpu_count()


def in_order(
    work: Callable[[Item], Result],
    items: Iterable[Item],
    days: int,
    *,
    cores: int | None = None,
    spare: int = 1,
    initializer: Callable[[], None] | None = None,
) -> Iterator[tuple[Item, Result]]:
    """(item, `work(item)`) for each of the `days` items (drawn lazily, in order), in that
    order, computed in worker processes (`worker_count`) or, with none, here. A failure raises
    here, at its item, and cancels the items after."""
    workers = worker_count(
        days,
        available_cores() if cores is None else cores,
        daemonic=multiprocessing.current_process().daemon,
        spare=spare,
    )
    if not workers:
        for item in items:
            yield item, work(item)
        return
    pool = ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=initializer
    )
    pending: deque[tuple[Item, Future[Result]]] = deque()
    drawn = iter(items)
    try:
        while True:
            # keep the workers busy, with one item more than there are workers at most
            while len(pending) <= workers and (nxt := next(drawn, None)) is not None:
                pending.append((nxt, pool.submit(work, nxt)))
            if not pending:
                return
            item, future = pending.popleft()
            yield item, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
