"""A range's models fitted in worker processes while the caller logs the days before.

A backfill trains one model per day. Fitting and saving a model for MLflow (skops' dump and
its audit, the signature: transforms/model_files.py) are CPU work of scikit-learn and skops;
drawing a day's sample (transforms/sampling.py) and logging the run (its parameters,
metrics, datasets, the saved files, the registered version) are Python work in the step's own
process, which takes one run at a time. Here worker processes (transforms/workers.py) fit and
save the days' models, one OpenMP thread each, one per core, beside the step, which draws the
next samples, logs the runs before them and gets the outcomes back in the days' order: a
worker per core and the step beside them keep every core busy whichever of them waits
(docs/performance.md). A day with too little history has nothing to fit: its outcome is
decided in the step, without a worker's turn (the first days of a new deployment's
backfill). MLflow is loaded while the first fits start. One day alone is fitted and saved in
the step's process on all its threads.

A model does not depend on how many threads fitted it: histogram gradient boosting splits
its work by feature, not by row (`test_ml_chain.py` rebuilds registered versions in one
process and compares their predictions exactly).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from shopsmart_assets.transforms.model_files import save_model_files
from shopsmart_assets.transforms.sampling import WindowSample
from shopsmart_assets.transforms.training import (
    TrainingOutcome,
    train_and_evaluate,
    untrainable,
)
from shopsmart_assets.transforms.workers import in_order


def _one_thread() -> None:
    """A worker fits on one thread: the step's process and the other workers have the
    other cores. It loads what it saves models with while it starts."""
    import mlflow.sklearn  # noqa: F401
    import sklearn.ensemble  # noqa: F401  (loads the OpenMP runtime the limit applies to)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def fit(sample: WindowSample) -> TrainingOutcome:
    """A day's model, fitted on its sample and evaluated on its day."""
    return train_and_evaluate(sample.train, sample.evaluation, sample.weights)


def _fit_day(
    day: tuple[str, WindowSample], save_to: Path | None
) -> tuple[TrainingOutcome, Path | None]:
    """A day's model and, when one was trained and `save_to` given, its files for MLflow
    in `save_to/<day>`."""
    key, sample = day
    outcome = fit(sample)
    if outcome.model is None or save_to is None:
        return outcome, None
    return outcome, save_model_files(outcome.model, sample.train, save_to / key)


def _nothing_to_fit(day: tuple[str, WindowSample]) -> bool:
    """A day without enough examples to fit on: its outcome is decided at once, in the
    step's process."""
    return untrainable(day[1].train, day[1].evaluation) is not None


@contextmanager
def fitted_in_order(
    samples: Iterable[tuple[str, WindowSample]],
    days: int,
    cores: int | None = None,
    meanwhile: Callable[[], object] | None = None,
    save_to: Path | None = None,
) -> Iterator[Iterator[tuple[str, WindowSample, TrainingOutcome, Path | None]]]:
    """(day, its sample, its model's outcome, the model's saved files) for each of the `days`
    (day, sample) pairs of `samples` (drawn lazily, in order), in that order. The models are
    fitted, and saved for MLflow in `save_to/<day>` (`save_model_files`; no files without
    `save_to` or a model), in worker processes (one per core) while the caller handles the
    ones before (`meanwhile` runs while the workers start); a failed fit raises here, at its
    day, and cancels the days after.

    Leaving the block stops the workers (`in_order`)."""
    with in_order(
        partial(_fit_day, save_to=save_to),
        samples,
        days,
        cores=cores,
        initializer=_one_thread,
        meanwhile=meanwhile,
        quick=_nothing_to_fit,
    ) as fitted:
        yield ((key, sample, *done) for (key, sample), done in fitted)
