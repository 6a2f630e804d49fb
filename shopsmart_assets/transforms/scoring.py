"""Daily propensity scores: one row per customer of the day's features (pandas)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from shopsmart_assets.transforms.features import EVENT_TIMESTAMP

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


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


def score_distribution(scores: pd.DataFrame) -> dict[str, float]:
    """Mean and quantiles of the scores (NaN when there are none), for plots over days."""
    values = scores["score"]
    summary = {"score_mean": float(values.mean()) if len(values) else float("nan")}
    for q in QUANTILES:
        summary[f"score_p{round(q * 100):02d}"] = (
            float(values.quantile(q)) if len(values) else float("nan")
        )
    return summary


def score_problems(
    key: str, snapshot_ids: pd.Series, scores: pd.DataFrame, version: int | None
) -> list[str]:
    """How a day's scores differ from one per customer of its CRM snapshot."""
    if version is None:
        return [] if scores.empty else [f"{key}: {len(scores)} scores without a champion"]
    expected = set(snapshot_ids.dropna().astype("int64"))
    got = scores["customer_id"]
    problems = []
    if got.duplicated().any():
        problems.append(f"{key}: {int(got.duplicated().sum())} customers scored twice")
    missing, extra = expected - set(got), set(got) - expected
    if missing:
        problems.append(f"{key}: {len(missing)} customers of the snapshot have no score")
    if extra:
        problems.append(f"{key}: {len(extra)} scores for customers not in the snapshot")
    return problems
