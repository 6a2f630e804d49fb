"""A range's days worked on in worker processes, beside the step, in the days' order.

A backfill step handles one day after another: fitting a model per day, scoring a day's
customers. Here spawned worker processes (nothing of the step's process inherited) take the
days while the step's own process handles the results of the days before, in order. At most
one day more than there are workers is in flight, and a few more held (days with nothing to
compute, handled here at their turn): memory holds a few days' work, whatever the range.
One day alone is handled in the step's process: a worker would only add its start. So
is every day on the Celery worker pools, whose tasks run in daemonic processes (that may not
start processes); the pools run steps side by side instead.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import closing
from functools import wraps
from typing import Any, TypeVar

Item = TypeVar("Item")
# Items held at once (drawn, not yet handed back), per worker and one: quick items do not
# wait for a worker, but each holds its data until its turn.
MAX_HELD_PER_WORKER = 3
Result = TypeVar("Result")


def worker_count(days: int, cores: int, daemonic: bool = False, spare: int = 0) -> int:
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


def _closed_on_leaving(
    function: Callable[..., Iterator[Any]],
) -> Callable[..., closing[Iterator[Any]]]:
    """A generator function made a block: leaving the block closes the generator, which
    runs its `finally` (the generator's pool shut down) whatever still holds it."""

    @wraps(function)
    def block(*args: Any, **kwargs: Any) -> closing[Iterator[Any]]:
        return closing(function(*args, **kwargs))

    return block


@_closed_on_leaving
def in_order(
    work: Callable[[Item], Result],
    items: Iterable[Item],
    days: int,
    *,
    cores: int | None = None,
    initializer: Callable[[], None] | None = None,
    meanwhile: Callable[[], object] | None = None,
    quick: Callable[[Item], bool] | None = None,
) -> Iterator[tuple[Item, Result]]:
    """A block whose value is (item, `work(item)`) for each of the `days` items (drawn
    lazily, in order), in that order, computed in worker processes (`worker_count`) or, with
    none, here.

    - `meanwhile` is called once, here, while the first workers start (a process start is
      seconds of imports: the caller loads what it needs for the results meanwhile).
    - Items `quick` says need no real work (a day with too little history to fit a model)
      are worked on here, at their turn: they take no worker's turn, and the workers go on
      with the items after them.
    - A failure raises here, at its item, and cancels the items after.
    - Leaving the block stops the workers, whatever still holds the results (a failure of
      the caller's own, a traceback holding the iterator): a step's process waits for its
      worker processes when it exits, and would wait for ever for workers left waiting."""
    workers = worker_count(
        days,
        available_cores() if cores is None else cores,
        daemonic=multiprocessing.current_process().daemon,
    )
    if not workers:
        if meanwhile is not None:
            meanwhile()
        for item in items:
            yield item, work(item)
        return
    pool = ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=initializer
    )
    # (item, its future; None for a quick item, worked on when its turn comes)
    pending: deque[tuple[Item, Future[Result] | None]] = deque()
    drawn = iter(items)

    def room() -> bool:
        """One worker item more than there are workers in flight at most, and a bounded
        number of items held in all (each holds its data until its turn)."""
        in_workers = sum(1 for _, future in pending if future is not None)
        return in_workers <= workers and len(pending) < MAX_HELD_PER_WORKER * (workers + 1)

    try:
        while True:
            while room() and (nxt := next(drawn, None)) is not None:
                here = quick is not None and quick(nxt)
                pending.append((nxt, None if here else pool.submit(work, nxt)))
            if meanwhile is not None:
                meanwhile()
                meanwhile = None
            if not pending:
                return
            item, future = pending.popleft()
            yield item, work(item) if future is None else future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
