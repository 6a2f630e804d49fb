"""Links from the ML assets' metadata to MLflow's UI (registered versions) and to the Dagster
pages of the partitions that made a model or a champion."""

from __future__ import annotations

from typing import Any

import dagster as dg

from shopsmart_assets.defs.links import asset_url
from shopsmart_assets.defs.ml.records import Champion
from shopsmart_assets.resources import ModelRegistry

PURCHASE_MODEL_KEY = dg.AssetKey(["ml", "purchase_model"])
# The docs section of the model and its champion.
MODEL_SECTION = ("ml.md", "The model: runs, versions, champion")


def registered_version(version: int | None, model_registry: ModelRegistry) -> dict[str, Any]:
    """A link to a registered model version's page in MLflow's UI (nothing for none)."""
    if version is None:
        return {}
    return {"registered_version": dg.MetadataValue.url(model_registry.version_url(int(version)))}


def champion_links(champion: Champion | None, model_registry: ModelRegistry) -> dict[str, Any]:
    """Where a day's champion came from: the model partition that trained it (Dagster UI)
    and its registered version (MLflow UI); nothing while there is no champion."""
    if champion is None:
        return {}
    return {
        "champion_trained_in": dg.MetadataValue.url(
            asset_url(PURCHASE_MODEL_KEY, champion.model_partition)
        ),
        **registered_version(champion.model_version, model_registry),
    }
