"""Daily scores as a frame: one row per customer with the model version, or none at all; the
day's figures and checks, computed over the files as written."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shopsmart_assets.transforms.scoring import score_distribution, score_problems, scores_frame


def written(directory, frame: pd.DataFrame):
    """A frame as a lake partition: a directory of Parquet files (two, to count across)."""
    directory.mkdir(parents=True)
    half = len(frame) // 2
    frame.iloc[:half].to_parquet(directory / "part-0.parquet", index=False)
    frame.iloc[half:].to_parquet(directory / "part-1.parquet", index=False)
    return directory


def features(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1),
            "event_timestamp": pd.Timestamp("2026-01-02", tz="UTC"),
        }
    )


def test_one_score_per_customer_with_its_model_version(tmp_path):
    frame = scores_frame(features(4), np.array([0.1, 0.4, 0.2, 0.9]), 7)
    assert frame["customer_id"].tolist() == [1, 2, 3, 4]
    assert frame["model_version"].unique().tolist() == [7]
    assert str(frame["event_timestamp"].dt.tz) == "UTC"
    summary = score_distribution(written(tmp_path / "day", frame))
    assert summary["score_p50"] == pytest.approx(frame["score"].quantile(0.5))
    assert summary["score_p90"] == pytest.approx(frame["score"].quantile(0.9))
    assert summary["score_mean"] == pytest.approx(0.4)


def test_no_champion_no_scores_and_a_mismatch_is_an_error(tmp_path):
    empty = scores_frame(features(3), None, None)
    scored = scores_frame(features(1), [0.5], 1)
    assert empty.empty and list(empty.columns) == list(scored.columns)
    # the lake's days with and without scores hold the same column types
    assert empty.dtypes.to_dict() == scored.dtypes.to_dict()
    assert np.isnan(score_distribution(written(tmp_path / "day", empty))["score_p90"])
    with pytest.raises(ValueError, match="2 scores for 3 customers"):
        scores_frame(features(3), np.array([0.1, 0.2]), 1)


def test_score_problems_name_missing_duplicate_and_foreign_customers(tmp_path):
    snapshot = written(
        tmp_path / "snapshot", pd.DataFrame({"customer_id": pd.array([1, 2, 3, None, 3], "Int64")})
    )
    good = scores_frame(features(3), np.array([0.1, 0.2, 0.3]), 2)
    scores = written(tmp_path / "good", good)
    assert score_problems("2026-01-02", snapshot, scores, 2) == []
    bad = pd.concat([good.iloc[[0, 0]], scores_frame(features(5).tail(1), [0.5], 2)])
    assert score_problems("2026-01-02", snapshot, written(tmp_path / "bad", bad), 2) == [
        "2026-01-02: 1 customers scored twice",
        "2026-01-02: 2 customers of the snapshot have no score",
        "2026-01-02: 1 scores for customers not in the snapshot",
    ]
    none = written(tmp_path / "none", scores_frame(features(3), None, None))
    assert score_problems("2026-01-02", snapshot, none, None) == []
    assert score_problems("2026-01-02", snapshot, scores, None) == [
        "2026-01-02: 3 scores without a champion"
    ]
