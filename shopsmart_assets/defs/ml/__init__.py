"""The ML end: the point-in-time training set, the purchase model (an MLflow run and a
registered version per day), the champion (the registry's `champion` alias) and the daily
scores (lake + Feast). One module per asset; `build_ml_assets` binds them to the partitions."""

from __future__ import annotations

import dagster as dg

from shopsmart_assets.defs.ml.champion_model import CHAMPION_MODEL_KEY, champion_model_asset
from shopsmart_assets.defs.ml.links import PURCHASE_MODEL_KEY
from shopsmart_assets.defs.ml.purchase_model import MEETS_BAR, purchase_model_asset
from shopsmart_assets.defs.ml.purchase_scores import (
    ONE_SCORE_PER_CUSTOMER,
    PURCHASE_SCORES_KEY,
    purchase_scores_asset,
)
from shopsmart_assets.defs.ml.training_set import TRAINING_SET_KEY, training_set_asset
from shopsmart_assets.partitions import Partitions


def build_ml_assets(partitions: Partitions) -> list[dg.AssetsDefinition]:
    """The training set, the model, the champion and the scores, on the daily partitions."""
    return [
        training_set_asset(partitions),
        purchase_model_asset(partitions),
        champion_model_asset(partitions),
        purchase_scores_asset(partitions),
    ]


__all__ = [
    "CHAMPION_MODEL_KEY",
    "MEETS_BAR",
    "ONE_SCORE_PER_CUSTOMER",
    "PURCHASE_MODEL_KEY",
    "PURCHASE_SCORES_KEY",
    "TRAINING_SET_KEY",
    "build_ml_assets",
]
