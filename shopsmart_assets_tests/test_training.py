"""Training examples, labels without leakage, the model and the promotion rule."""

from __future__ import annotations

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
from shopsmart_assets.transforms.features import FEATURE_COLUMNS
from shopsmart_assets.transforms.training import (
    MIN_TRAIN_ROWS,
    frame_fingerprint,
    label_examples,
    should_promote,
    train_and_evaluate,
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


def test_fingerprint_tracks_content_not_order():
    frame = synthetic(50, 3)
    shuffled = frame.sample(frac=1.0, random_state=0)
    assert frame_fingerprint(frame) == frame_fingerprint(shuffled)
    changed = frame.copy()
    changed.loc[0, "label"] = 1 - changed.loc[0, "label"]
    assert frame_fingerprint(changed) != frame_fingerprint(frame)
    assert frame_fingerprint(pd.concat([frame, frame.iloc[:1]])) != frame_fingerprint(frame)


def test_the_signature_sample_gives_the_signature_of_the_whole_frame():
    from mlflow.models import infer_signature

    from shopsmart_assets.resources.model_registry import signature_sample
    from shopsmart_assets.transforms.training import model_input

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
