"""The champion model's promotion bar."""

from __future__ import annotations

import dagster as dg


class PromotionPolicy(dg.ConfigurableResource):
    """A candidate becomes champion only with AUC >= `min_auc` and no more than
    `max_auc_regression` below the current champion's AUC."""

    min_auc: float = 0.6
    max_auc_regression: float = 0.02
