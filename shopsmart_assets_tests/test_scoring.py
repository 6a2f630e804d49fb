"""Daily scores as a frame: one row per customer with the model version, or none at all; the
day's figures and checks, computed over the files as written."""

from __future__ import annotations

from pathlib import Path

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


def test_days_scored_in_workers_are_the_days_scored_in_the_step(tmp_path):
    """A range's days scored in worker processes, from local copies of MLflow models (two
    versions, a day without a champion between), write exactly what the step's own process
    writes, in the days' order; a day that cannot be scored fails at that day."""
    import mlflow.sklearn
    import pyarrow.parquet as pq

    from shopsmart_assets.transforms.scoring import DayToScore, scored_in_order
    from shopsmart_assets.transforms.training import train_and_evaluate
    from shopsmart_assets_tests.test_training import synthetic

    models = {}
    for version, seed in ((3, 1), (4, 2)):
        model = train_and_evaluate(synthetic(300, seed), synthetic(150, seed + 10)).model
        path = tmp_path / f"model-{version}"
        mlflow.sklearn.save_model(
            model,
            str(path),
            pyfunc_predict_fn="predict_proba",
            serialization_format="pickle",
            pip_requirements=["scikit-learn"],  # not inferred: that loads the model again
        )
        models[version] = str(path)
    customers = (
        synthetic(40, 5)
        .drop(columns="label")
        .assign(event_timestamp=pd.Timestamp("2026-01-02", tz="UTC"))
    )
    features = written(tmp_path / "features", customers)
    files = tuple(str(f) for f in sorted(features.glob("*.parquet")))
    champions = [3, 3, None, 4]

    def days(where: str) -> list[DayToScore]:
        (tmp_path / where).mkdir()
        return [
            DayToScore(
                f"2026-01-0{i + 1}",
                models[v] if v else None,
                v,
                files,
                str(tmp_path / where / f"{i}.parquet"),
                files,  # the snapshot: the features' customers
            )
            for i, v in enumerate(champions)
        ]

    with scored_in_order(days("workers"), cores=2) as scored_days:
        in_workers = list(scored_days)
    with scored_in_order(days("step"), cores=1) as scored_days:  # one core: no worker
        in_step = list(scored_days)
    assert [d.file.rsplit("/", 1)[-1] for d in in_workers] == [
        "0.parquet",
        "1.parquet",
        "2.parquet",
        "3.parquet",
    ]
    for a, b, version in zip(in_workers, in_step, champions, strict=True):
        left, right = pq.read_table(a.file), pq.read_table(b.file)
        assert left.equals(right)
        assert left.num_rows == (0 if version is None else len(customers))
        assert set(left.column("model_version").to_pylist()) <= {version}
        # the figures made where the day was scored: over its own file, against its snapshot
        assert a.distribution == pytest.approx(b.distribution, nan_ok=True)
        assert a.distribution == pytest.approx(score_distribution([Path(a.file)]), nan_ok=True)
        assert a.problems == b.problems
    # the customers' snapshot is the features' customers: the days with a champion reconcile
    assert [d.problems for d in in_workers] == [[], [], [], []]
    assert not pq.read_table(in_workers[0].file).equals(pq.read_table(in_workers[3].file))
    broken = [
        *days("broken")[:2],
        DayToScore(
            "2026-01-09", str(tmp_path / "gone"), 9, files, str(tmp_path / "broken" / "x.parquet")
        ),
    ]
    with scored_in_order(broken, cores=1) as scored:  # (in workers: test_training.py)
        assert next(scored).file.endswith("0.parquet") and next(scored).file.endswith("1.parquet")
        with pytest.raises(Exception, match="gone"):
            next(scored)
