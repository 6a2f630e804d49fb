"""Training examples, the purchase model and the promotion rule (pandas + scikit-learn).

An example pairs a customer's features as of day F with a label: did the customer make a
purchase that stood (not cancelled or refunded) on any of the 7 days after F? The training-set
partition D holds the examples whose label window ends on D (F = D - 7), so it can be built as
soon as day D's purchases are in, and no feature ever sees a day after F.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # scikit-learn is slow to import: only the steps that train do
    from sklearn.pipeline import Pipeline

from shopsmart_assets.transforms.features import FEATURE_COLUMNS, NOT_PURCHASED

LABEL_DAYS = 7
TRAINING_WINDOW_DAYS = 28  # training-set partitions a model learns from (the newest is held out)
MIN_TRAIN_ROWS = 50
MIN_TEST_ROWS = 20
SEGMENTS = ("consumer", "premium", "business")
NUMERIC_FEATURES = tuple(
    c for c in FEATURE_COLUMNS if c not in {"as_of_date", "customer_id", "segment", "country"}
)
# What the model takes: a customer's feature row as the lake and the feature store hold it.
MODEL_INPUTS = (*NUMERIC_FEATURES, "segment")
TRAINING_COLUMNS = (*FEATURE_COLUMNS, "label")
HYPERPARAMETERS = {
    "max_iter": 150,
    "learning_rate": 0.08,
    "max_leaf_nodes": 15,
    "random_state": 0,
    "early_stopping": False,
}
# The one scikit-learn type the model holds beyond skops' default trust list (MLflow saves
# models with skops, which refuses to load types nobody vouched for).
SKOPS_TRUSTED_TYPES = ("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",)


def stood_buyers(purchases: pd.DataFrame) -> np.ndarray:
    """The customers (sorted, unique) with a purchase that stood (not cancelled or refunded)
    among these purchase lines (`customer_id`, `status`)."""
    stood = purchases.loc[~purchases["status"].isin(NOT_PURCHASED), "customer_id"]
    return np.unique(stood.dropna().astype("int64").to_numpy())


def labelled(features: pd.DataFrame, buyers: np.ndarray) -> pd.DataFrame:
    """Features as of day F plus `label` = 1 for the customers among `buyers` (those who
    bought in the label window after F: `stood_buyers`). Works a batch of features at a time."""
    examples = features.loc[:, list(FEATURE_COLUMNS)].copy()
    ids = examples["customer_id"].to_numpy(dtype="int64", na_value=-1)
    examples["label"] = np.isin(ids, buyers).astype("int64")
    return examples


def label_examples(features: pd.DataFrame, later_purchases: pd.DataFrame) -> pd.DataFrame:
    """Features as of day F plus `label` = 1 when the customer bought in the days after F.

    `later_purchases` must hold only purchases dated after F (the label window): the caller
    picks the partitions, this function never looks at dates.
    """
    return labelled(features, stood_buyers(later_purchases))


def model_input(features: pd.DataFrame) -> pd.DataFrame:
    """The model's input frame: numeric features as floats (NaN kept for 'never') and the
    segment as text. The same frame scores customers in batch and over HTTP."""
    frame = features.loc[:, list(NUMERIC_FEATURES)].astype("float64")
    frame["segment"] = features["segment"].astype("object")
    return frame.loc[:, list(MODEL_INPUTS)]


def new_model() -> Pipeline:
    """Segment one-hot encoded, then gradient-boosted trees; a scikit-learn Pipeline, so the
    saved model takes feature rows as they are."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    encode = ColumnTransformer(
        [
            ("numeric", "passthrough", list(NUMERIC_FEATURES)),
            (
                "segment",
                OneHotEncoder(
                    categories=[list(SEGMENTS)], handle_unknown="ignore", sparse_output=False
                ),
                ["segment"],
            ),
        ]
    )
    return Pipeline(
        [("encode", encode), ("classify", HistGradientBoostingClassifier(**HYPERPARAMETERS))]
    )


def propensity(model: Pipeline, features: pd.DataFrame) -> np.ndarray:
    """Probability of a purchase in the next 7 days, per feature row."""
    return model.predict_proba(model_input(features))[:, 1]


@dataclass(frozen=True)
class TrainingOutcome:
    model: Pipeline | None
    metrics: dict[str, float | int]
    reason: str | None = None  # why no model was trained

    @property
    def trained(self) -> bool:
        return self.model is not None


def untrainable(train: pd.DataFrame, test: pd.DataFrame) -> str | None:
    """Why no model can be fitted on `train` and evaluated on `test` (None: one can)."""
    if len(train) < MIN_TRAIN_ROWS:
        return f"{len(train)} training examples, at least {MIN_TRAIN_ROWS} needed"
    if len(test) < MIN_TEST_ROWS:
        return f"{len(test)} evaluation examples, at least {MIN_TEST_ROWS} needed"
    if train["label"].nunique() < 2 or test["label"].nunique() < 2:
        return "the labels hold a single class"
    return None


def train_and_evaluate(
    train: pd.DataFrame, test: pd.DataFrame, weights: np.ndarray | None = None
) -> TrainingOutcome:
    """Fit on `train` (each row weighing `weights`, when sampled: transforms/sampling.py),
    score out of time on `test` (the newest labelled day)."""
    sizes = {
        "train_rows": len(train),
        "test_rows": len(test),
        "train_positive_rate": float(train["label"].mean()) if len(train) else 0.0,
        "test_positive_rate": float(test["label"].mean()) if len(test) else 0.0,
    }
    problem = untrainable(train, test)
    if problem:
        return TrainingOutcome(model=None, metrics=sizes, reason=problem)

    from sklearn.metrics import log_loss, roc_auc_score

    model = new_model()
    fit_weights = {} if weights is None else {"classify__sample_weight": weights}
    model.fit(model_input(train), train["label"].astype("int64"), **fit_weights)
    scores = propensity(model, test)
    metrics = {
        **sizes,
        "auc": round(float(roc_auc_score(test["label"].astype("int64"), scores)), 4),
        "log_loss": round(
            float(log_loss(test["label"].astype("int64"), np.clip(scores, 1e-6, 1 - 1e-6))), 4
        ),
    }
    return TrainingOutcome(model=model, metrics=metrics)


def should_promote(
    candidate_auc: float | None, champion_auc: float | None, min_auc: float, max_regression: float
) -> tuple[bool, str]:
    """The promotion rule: good enough on its own, and not worse than the champion by more
    than `max_regression` AUC."""
    if candidate_auc is None:
        return False, "no candidate model was trained"
    if candidate_auc < min_auc:
        return False, f"AUC {candidate_auc:.4f} is below the minimum {min_auc:.4f}"
    if champion_auc is not None and candidate_auc < champion_auc - max_regression:
        return False, (
            f"AUC {candidate_auc:.4f} is worse than the champion's {champion_auc:.4f} "
            f"by more than {max_regression:.4f}"
        )
    return True, f"AUC {candidate_auc:.4f} meets the bar"
