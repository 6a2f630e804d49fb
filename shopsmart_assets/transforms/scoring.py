"""Daily propensity scores: one row per customer of the day's features (pandas, a batch at a
time), and the day's figures and checks (DuckDB over the written files)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shopsmart_assets.lake.frames import batches, bounded_duckdb, partition_files
from shopsmart_assets.lake.metadata import PartitionData
from shopsmart_assets.transforms.features import EVENT_TIMESTAMP
from shopsmart_assets.transforms.training import model_input
from shopsmart_assets.transforms.workers import in_order

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
# The scores' files, whether a day has a champion or not.
SCORES_SCHEMA = pa.schema(
    [
        ("customer_id", pa.int64()),
        ("score", pa.float64()),
        ("model_version", pa.int64()),
        (EVENT_TIMESTAMP, pa.timestamp("us", tz="UTC")),
    ]
)


def scores_frame(
    features: pd.DataFrame, probabilities: np.ndarray | None, model_version: int | None
) -> pd.DataFrame:
    """The customers of a day's features with their score and the model version that gave
    it; no rows when no model was in service (no probabilities)."""
    if probabilities is None or model_version is None:
        return pd.DataFrame(
            {
                "customer_id": pd.Series(dtype="int64"),
                "score": pd.Series(dtype="float64"),
                "model_version": pd.Series(dtype="int64"),
                EVENT_TIMESTAMP: pd.Series(dtype="datetime64[us, UTC]"),
            }
        )
    if len(probabilities) != len(features):
        raise ValueError(f"{len(probabilities)} scores for {len(features)} customers")
    return pd.DataFrame(
        {
            "customer_id": features["customer_id"].astype("int64").to_numpy(),
            "score": np.asarray(probabilities, dtype="float64"),
            "model_version": np.full(len(features), model_version, dtype="int64"),
            # the array keeps the zone and the unit (a NumPy array would make it ns): a day
            # with scores and one without hold the same type
            EVENT_TIMESTAMP: pd.to_datetime(features[EVENT_TIMESTAMP], utc=True)
            .dt.as_unit("us")
            .array,
        }
    )


@dataclass(frozen=True)
class DayToScore:
    """A day to score: its champion (a local copy of the registered MLflow model and its
    version; None on a day without one), the day's feature files, and the file to write."""

    day: str
    model: str | None
    version: int | None
    features: tuple[str, ...]
    target: str
    # the day's CRM snapshot, which its scores are held against (one per customer)
    snapshot: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScoredDay:
    """A day's scores file, their distribution, and how they differ from one score per
    customer of the day's snapshot (`score_problems`), figured where the day was scored."""

    day: str
    file: str
    distribution: dict[str, float]
    problems: list[str]


# The models a process scored with last (a range's days mostly share their champion).
_LOADED: dict[str, Any] = {}
_KEEP_LOADED = 2


def _model(path: str) -> Any:
    """The MLflow model at `path` as MLflow's pyfunc (what the scoring server runs)."""
    if path not in _LOADED:
        import mlflow.pyfunc

        while len(_LOADED) >= _KEEP_LOADED:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[path] = mlflow.pyfunc.load_model(path)
    return _LOADED[path]


def score_day(day: DayToScore) -> ScoredDay:
    """A day's scores written to `day.target`, a batch of customers at a time (no rows on a
    day without a champion), and their figures over the written file."""
    with pq.ParquetWriter(day.target, SCORES_SCHEMA) as writer:
        if day.model is not None:
            model = _model(day.model)
            for batch in batches([Path(f) for f in day.features]):
                probabilities = model.predict(model_input(batch))[:, 1]
                scores = scores_frame(batch, probabilities, day.version)
                writer.write_table(
                    pa.Table.from_pandas(scores, schema=SCORES_SCHEMA, preserve_index=False)
                )
    written = [Path(day.target)]
    snapshot = [Path(f) for f in day.snapshot]
    return ScoredDay(
        day.day,
        day.target,
        score_distribution(written),
        score_problems(day.day, snapshot, written, day.version),
    )


def score_days(days: Sequence[DayToScore]) -> list[ScoredDay]:
    """Days that share their champion scored one after the other (its model loaded once)."""
    return [score_day(day) for day in days]


@contextmanager
def scored_in_order(
    days: Sequence[DayToScore],
    cores: int | None = None,
    fetch: Callable[[DayToScore], object] | None = None,
    meanwhile: Callable[[], object] | None = None,
) -> Iterator[Iterator[ScoredDay]]:
    """A block whose value is each day scored, in the days' order. A range's days are
    scored in worker processes, one per core (transforms/workers.py), the days of one
    champion together, so that each model is loaded once (loading a model costs more than
    scoring a demo's day). `fetch` puts a day's model at `day.model` (a copy of a registered
    version), called here for each champion just before its days are handed out: the first
    copies are made while the workers start. `meanwhile` is called once, here, while the
    workers score the first days (what the caller needs next: its online store). Leaving the
    block stops the workers (`in_order`)."""

    by_model = [list(group) for _, group in groupby(days, key=lambda day: day.model)]

    def fetched() -> Iterator[list[DayToScore]]:
        for same_model in by_model:
            if fetch is not None and same_model[0].model is not None:
                fetch(same_model[0])
            yield same_model

    with in_order(score_days, fetched(), len(by_model), cores=cores, meanwhile=meanwhile) as scored:
        yield (day for _, same_model in scored for day in same_model)


def score_distribution(scores: PartitionData) -> dict[str, float]:
    """Mean and quantiles of a day's scores as written (NaN when there are none), for plots
    over days; computed by DuckDB over the partition's files, exact, as pandas would."""
    quantiles = ", ".join(f"quantile_cont(score, {q})" for q in QUANTILES)
    with bounded_duckdb() as connection:
        row = connection.execute(
            f"SELECT avg(score), {quantiles} FROM read_parquet(?)", [partition_files(scores)]
        ).fetchone()
    values = [float("nan") if v is None else float(v) for v in row]
    names = ["score_mean", *(f"score_p{round(q * 100):02d}" for q in QUANTILES)]
    return dict(zip(names, values, strict=True))


def score_problems(
    key: str, snapshot: PartitionData, scores: PartitionData, version: int | None
) -> list[str]:
    """How a day's scores (as written) differ from one per customer of its CRM snapshot,
    counted by DuckDB over both partitions' files (bounded memory, whatever the customers)."""
    with bounded_duckdb() as connection:
        twice, missing, extra, rows = connection.execute(
            """
            WITH scores AS (SELECT customer_id FROM read_parquet($1)),
                 snapshot AS (
                     SELECT DISTINCT customer_id FROM read_parquet($2)
                     WHERE customer_id IS NOT NULL
                 )
            SELECT
                (SELECT count(*) - count(DISTINCT customer_id) FROM scores),
                (SELECT count(*) FROM snapshot ANTI JOIN scores USING (customer_id)),
                (SELECT count(DISTINCT customer_id) FROM scores ANTI JOIN snapshot
                    USING (customer_id)),
                (SELECT count(*) FROM scores)
            """,
            [partition_files(scores), partition_files(snapshot)],
        ).fetchone()
    if version is None:
        return [f"{key}: {rows} scores without a champion"] if rows else []
    problems = []
    if twice:
        problems.append(f"{key}: {twice} customers scored twice")
    if missing:
        problems.append(f"{key}: {missing} customers of the snapshot have no score")
    if extra:
        problems.append(f"{key}: {extra} scores for customers not in the snapshot")
    return problems
