"""Training examples, labels without leakage, the model and the promotion rule."""

from __future__ import annotations

import multiprocessing
import os
from datetime import date

import numpy as np
import pandas as pd
import pytest

from shopsmart_assets.definitions import build_assets
from shopsmart_assets.defs.asset_graph import DeclaredAssetGraph
from shopsmart_assets.defs.features.assets import CUSTOMER_FEATURES_KEY
from shopsmart_assets.defs.lake.assets import PURCHASES_KEY
from shopsmart_assets.defs.ml import TRAINING_SET_KEY
from shopsmart_assets.partitions import build_partitions
from shopsmart_assets.transforms import sampling
from shopsmart_assets.transforms.features import FEATURE_COLUMNS
from shopsmart_assets.transforms.sampling import draws, window_sample
from shopsmart_assets.transforms.training import (
    MIN_TRAIN_ROWS,
    label_examples,
    model_input,
    should_promote,
    train_and_evaluate,
)
from shopsmart_assets.transforms.training_workers import fit, fitted_in_order
from shopsmart_assets.transforms.workers import (
    MAX_HELD_PER_WORKER,
    in_order,
    worker_count,
)


def feature_rows(customer_ids, as_of=date(2026, 1, 7), activity=None) -> pd.DataFrame:
    rows = []
    for i, cid in enumerate(customer_ids):
        level = activity[i] if activity is not None else 0
        rows.append(
            {
                "as_of_date": as_of,
                "customer_id": cid,
                "recency_days": None if not level else 1,
                "frequency_7d": level,
                "frequency_30d": level,
                "frequency_90d": level,
                "monetary_7d": 10.0 * level,
                "monetary_30d": 10.0 * level,
                "monetary_90d": 10.0 * level,
                "interactions_30d": 0,
                "support_tickets_30d": 0,
                "tenure_days": 100,
                "has_valid_email": True,
                "segment": "consumer",
                "country": "US",
            }
        )
    return pd.DataFrame(rows, columns=list(FEATURE_COLUMNS))


def test_partition_d_uses_features_of_d_minus_7_and_labels_of_the_7_days_after():
    """What the training set reads is what its declared partition mappings say."""
    graph = DeclaredAssetGraph.of(build_assets(build_partitions("2026-01-01", "UTC")))
    features = graph.upstream_partitions(TRAINING_SET_KEY, CUSTOMER_FEATURES_KEY, ["2026-01-15"])
    labels = graph.upstream_partitions(TRAINING_SET_KEY, PURCHASES_KEY, ["2026-01-15"])
    assert features == ["2026-01-08"]
    assert labels == [f"2026-01-{d:02d}" for d in range(9, 16)]
    assert all(day > features[0] for day in labels)  # no label day is a feature day
    # the first week has no features 7 days earlier: nothing to wait for, nothing to label
    assert graph.upstream_partitions(TRAINING_SET_KEY, CUSTOMER_FEATURES_KEY, ["2026-01-05"]) == []


def test_label_is_a_purchase_that_stood_in_the_window():
    features = feature_rows([1, 2, 3, 4])
    later = pd.DataFrame(
        {"customer_id": [1, 2, 3, 3], "status": ["placed", "refunded", "cancelled", "placed"]}
    )
    examples = label_examples(features, later).set_index("customer_id")
    assert examples["label"].to_dict() == {1: 1, 2: 0, 3: 1, 4: 0}
    assert len(examples) == len(features)


def test_labels_do_not_leak_into_features():
    # Customer 1 buys only after the as-of day: features say "no purchase", label says yes.
    features = feature_rows([1])
    examples = label_examples(features, pd.DataFrame({"customer_id": [1], "status": ["placed"]}))
    row = examples.iloc[0]
    assert row["frequency_7d"] == 0 and row["label"] == 1
    assert list(examples.columns) == [*FEATURE_COLUMNS, "label"]


def synthetic(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    activity = rng.integers(0, 6, size=n)
    frame = feature_rows(range(n), activity=activity)
    frame["label"] = (rng.random(n) < 0.1 + 0.15 * activity).astype("int64")
    return frame


def test_model_learns_a_real_signal():
    outcome = train_and_evaluate(synthetic(600, 1), synthetic(300, 2))
    assert outcome.trained
    assert outcome.metrics["auc"] > 0.7
    assert outcome.metrics["train_rows"] == 600


def test_model_refuses_to_train_on_too_little_data():
    outcome = train_and_evaluate(synthetic(MIN_TRAIN_ROWS - 1, 1), synthetic(300, 2))
    assert not outcome.trained
    assert "training examples" in outcome.reason


def test_model_refuses_single_class_labels():
    train = synthetic(200, 1).assign(label=0)
    outcome = train_and_evaluate(train, synthetic(100, 2))
    assert not outcome.trained and "single class" in outcome.reason


@pytest.mark.parametrize(
    ("candidate", "champion", "expected"),
    [
        (0.75, None, True),  # first champion
        (0.55, None, False),  # below the minimum
        (0.74, 0.75, True),  # slightly worse, within the margin
        (0.72, 0.75, False),  # worse than the margin allows
        (0.80, 0.75, True),
        (None, 0.75, False),  # no model trained
    ],
)
def test_promotion_rule(candidate, champion, expected):
    promote, why = should_promote(candidate, champion, min_auc=0.6, max_regression=0.02)
    assert promote is expected
    assert why


def test_the_signature_sample_gives_the_signature_of_the_whole_frame():
    from mlflow.models import infer_signature

    from shopsmart_assets.transforms.model_files import signature_sample

    activity = [1] * 40 + [0] + [1] * 20  # one customer without purchases, far down
    frame = model_input(feature_rows(range(61), activity=activity))
    frame.loc[frame.index[50], "segment"] = None
    sample = signature_sample(frame)
    assert len(sample) < 10
    whole = infer_signature(frame).inputs.to_dict()
    assert infer_signature(sample).inputs.to_dict() == whole
    optional = {c["name"] for c in whole if not c.get("required", True)}
    assert {"recency_days", "segment"} <= optional


def test_a_logged_dataset_has_the_schema_of_the_whole_frame():
    """The MLflow dataset of a training frame carries the schema MLflow infers from every
    row, though it is computed from a sample (MLflow's own inference checks each value)."""
    from mlflow.models import infer_signature

    from shopsmart_assets.resources.model_registry import TrainingInput, dataset

    activity = [1] * 40 + [0] + [1] * 20
    frame = feature_rows(range(61), activity=activity).assign(label=[0, 1] * 30 + [0])
    frame.loc[frame.index[50], "country"] = None
    logged = dataset(
        TrainingInput(frame, "ml/training_set x", "digest", "training", "/lake", "label")
    )
    whole = infer_signature(frame).inputs
    assert logged.schema.to_dict() == whole.to_dict()
    optional = {c["name"] for c in whole.to_dict() if not c.get("required", True)}
    assert {"recency_days", "country"} <= optional
    assert logged.profile["num_rows"] == len(frame)  # the frame's own figures, not the sample's


@pytest.mark.parametrize(
    ("days", "cores", "workers"),
    [(1, 8, 0), (2, 1, 1), (2, 2, 2), (30, 2, 2), (30, 8, 8), (3, 8, 3)],
)
def test_a_range_is_worked_on_by_a_worker_per_core(days, cores, workers):
    # the step's own process works beside them (logs the models, writes the days' files)
    assert worker_count(days, cores) == workers
    # a Celery worker's task is a daemonic process, which may not start processes
    assert worker_count(days, cores, daemonic=True) == 0
    # a core may be kept for the step's process
    assert worker_count(days, cores, spare=1) == (0 if days < 2 else max(1, min(days, cores - 1)))


def _pid(item: int) -> int:
    return os.getpid()


def test_quick_items_are_handled_in_their_turn_here_and_take_no_workers_turn():
    """Items that need no work (a day with too little history to fit) are worked on in the
    caller's process, in order with the workers' items; what is held at once stays bounded
    whatever the number of items."""
    drawn: list[int] = []

    def items():
        for i in range(40):
            drawn.append(i)
            yield i

    with in_order(_pid, items(), 40, cores=2, quick=lambda i: i < 30 or i % 2 == 0) as results:
        first = next(results)
        # two workers: at most 3 × (2 + 1) items held before the first is handed back
        assert len(drawn) == MAX_HELD_PER_WORKER * 3
        rest = list(results)
    assert [item for item, _ in [first, *rest]] == list(range(40))
    here = {item for item, pid in [first, *rest] if pid == os.getpid()}
    assert here == {i for i in range(40) if i < 30 or i % 2 == 0}


def written_days(tmp_path, frames: dict[str, pd.DataFrame]) -> dict[str, object]:
    """Training-set partitions written as the lake holds them: one directory per day."""
    paths = {}
    for day, frame in frames.items():
        path = tmp_path / f"date={day}"
        path.mkdir(parents=True)
        frame.to_parquet(path / "part-0.parquet", index=False)
        paths[day] = path
    return paths


def windows_of(paths: dict[str, object]) -> dict[str, dict[str, object]]:
    """Each day's window: the days up to it (the model of a day learns from those before)."""
    days = list(paths)
    return {day: {d: paths[d] for d in days[: i + 1]} for i, day in enumerate(days)}


def test_models_fitted_in_workers_are_the_models_fitted_in_the_step(tmp_path):
    """Fitted and saved in worker processes (one thread each), each day's model, as MLflow
    loads its saved files, predicts exactly what the same fit in the step's own process
    predicts, and the days come back in order; no files for a day without a model."""
    import mlflow.pyfunc

    days = [f"2026-01-0{d}" for d in range(1, 5)]
    paths = written_days(tmp_path, {day: synthetic(150, i) for i, day in enumerate(days)})
    samples = [(day, window_sample(window, day)) for day, window in windows_of(paths).items()]
    saved = tmp_path / "models"
    with fitted_in_order(iter(samples), len(samples), cores=2, save_to=saved) as days_fitted:
        fitted = list(days_fitted)
    assert [day for day, *_ in fitted] == days
    assert not fitted[0][2].trained and fitted[0][3] is None  # nothing to learn from
    assert sorted(p.name for p in saved.iterdir()) == days[1:]
    for day, sample, outcome, files in fitted[1:]:
        expected = fit(sample)
        assert outcome.metrics == expected.metrics
        assert files == saved / day
        evaluation = model_input(sample.evaluation)
        served = mlflow.pyfunc.load_model(str(files)).predict(evaluation)
        assert np.array_equal(np.asarray(served), expected.model.predict_proba(evaluation))


def test_a_day_that_fails_to_fit_fails_at_that_day(tmp_path):
    days = ["2026-01-01", "2026-01-02", "2026-01-03"]
    broken = synthetic(150, 3).assign(monetary_7d="n/a")  # not a number a model can read
    frames = {days[0]: synthetic(150, 1), days[1]: synthetic(150, 2), days[2]: broken}
    paths = written_days(tmp_path, frames)
    windows = windows_of(paths)
    samples = ((day, window_sample(windows[day], day)) for day in days[1:])
    with fitted_in_order(samples, 2, cores=2) as fitted:
        assert next(fitted)[2].trained
        with pytest.raises(ValueError, match="could not convert"):
            next(fitted)


def test_leaving_the_block_stops_the_workers_whatever_still_holds_the_days(tmp_path):
    """A failure of the caller's own while it handles a day (its model's logging) ends the
    fits: no worker is left once the block is left, though the days' iterator is still held
    (as a traceback holds it), since a step's process waits for its workers at its exit."""
    days = [f"2026-01-0{d}" for d in range(1, 7)]
    paths = written_days(tmp_path, {day: synthetic(150, i) for i, day in enumerate(days)})
    samples = [(day, window_sample(window, day)) for day, window in windows_of(paths).items()]
    before = set(multiprocessing.active_children())
    held = []
    with (
        pytest.raises(RuntimeError, match="tracking store unreachable"),
        fitted_in_order(iter(samples), len(samples), cores=2) as fitted,
    ):
        held.append(fitted)
        for _, _, outcome, _ in fitted:
            if outcome.trained:
                assert set(multiprocessing.active_children()) - before  # the workers
                raise RuntimeError("tracking store unreachable")
    assert held and set(multiprocessing.active_children()) <= before


def test_a_window_that_fits_is_learned_whole_and_unweighted(tmp_path):
    """At demo volume the model learns from every example, unweighted: exactly the model of
    the whole window."""
    days = ["2026-01-01", "2026-01-02", "2026-01-03"]
    frames = {day: synthetic(300, i) for i, day in enumerate(days)}
    sample = window_sample(written_days(tmp_path, frames), days[-1])
    assert sample.train_rule.keeps_all and sample.weights is None
    assert sample.params()["sample_rule"] == "every example"
    whole = pd.concat([frames[days[0]], frames[days[1]]], ignore_index=True)
    pd.testing.assert_frame_equal(sample.train, whole, check_dtype=False)
    pd.testing.assert_frame_equal(sample.evaluation, frames[days[-1]], check_dtype=False)
    assert sample.window_examples == 600 and sample.day_examples == 300


def test_a_large_window_is_a_bounded_deterministic_weighted_sample(tmp_path, monkeypatch):
    monkeypatch.setattr(sampling, "MAX_TRAIN_ROWS", 1_000)
    monkeypatch.setattr(sampling, "MAX_EVAL_ROWS", 400)
    days = [f"2026-01-0{d}" for d in range(1, 6)]
    frames = {day: synthetic(2_000, i) for i, day in enumerate(days)}
    paths = written_days(tmp_path, frames)
    sample = window_sample(paths, days[-1])
    history = pd.concat([frames[d] for d in days[:-1]], ignore_index=True)
    positives = int(history["label"].sum())
    negatives = len(history) - positives
    assert positives > 500  # more positives than half the rows: they are sampled too
    # bounded: about MAX_TRAIN_ROWS rows (a hash draw, so within a few standard deviations)
    assert 850 <= len(sample.train) <= 1_150
    assert 330 <= len(sample.evaluation) <= 470
    assert set(sample.evaluation["customer_id"]) <= set(frames[days[-1]]["customer_id"])
    # weighted back to the window's classes
    weights = pd.Series(sample.weights)
    labels = sample.train["label"].to_numpy()
    assert weights[labels == 1].sum() == pytest.approx(positives, rel=0.15)
    assert weights[labels == 0].sum() == pytest.approx(negatives, rel=0.15)
    # deterministic, whatever the order the rows were written in
    shuffled = written_days(
        tmp_path / "shuffled", {d: f.sample(frac=1.0, random_state=1) for d, f in frames.items()}
    )
    again = window_sample(shuffled, days[-1])
    key = ["as_of_date", "customer_id"]
    assert sorted(map(tuple, again.train[key].astype(str).to_numpy())) == sorted(
        map(tuple, sample.train[key].astype(str).to_numpy())
    )
    assert again.params() == sample.params()
    outcome = fit(sample)
    assert outcome.trained and outcome.metrics["train_rows"] == len(sample.train)


def test_draws_are_uniform_and_differ_by_day():
    ids = np.arange(100_000)
    first, second = draws(ids, "2026-01-01"), draws(ids, "2026-01-02")
    assert ((first >= 0) & (first < 1)).all()
    assert abs(first.mean() - 0.5) < 0.01 and abs((first < 0.1).mean() - 0.1) < 0.005
    assert np.corrcoef(first, second)[0, 1] < 0.01
    assert np.array_equal(first, draws(ids, "2026-01-01"))
