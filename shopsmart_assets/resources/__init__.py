"""Resources: source databases, the lake, Spark, Feast, MLflow and the promotion policy."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import dagster as dg

from shopsmart_assets import settings
from shopsmart_assets.lake import LakeResource, lake_tables
from shopsmart_assets.resources.feature_store import FeatureStoreResource, feast_view_assets
from shopsmart_assets.resources.model_registry import ModelRegistry
from shopsmart_assets.resources.promotion import PromotionPolicy
from shopsmart_assets.resources.slack import SlackAlerts, slack_alerts
from shopsmart_assets.resources.sources import SourceDatabase
from shopsmart_assets.resources.spark import spark_resource


def _url(var: str, default: str) -> str | dg.EnvVar:
    """A URL from the environment through EnvVar (kept out of the UI), else the default."""
    return dg.EnvVar(var) if settings.is_set(var) else default


def feature_store(
    assets: Iterable[dg.AssetsDefinition], lake: LakeResource, online_store: str | dg.EnvVar
) -> FeatureStoreResource:
    """Feast over the lake tables its views read (from the assets' definitions)."""
    return FeatureStoreResource(
        online_store=online_store,
        registry=_url(settings.FEAST_REGISTRY_VAR, settings.default_feast_registry()),
        repo_dir=str(settings.feast_dir()),
        view_tables={
            view: str(lake.table_dir(key)) for view, key in feast_view_assets(assets).items()
        },
    )


def model_registry() -> ModelRegistry:
    return ModelRegistry(
        tracking_uri=_url(settings.MLFLOW_TRACKING_URI_VAR, settings.default_mlflow_tracking_uri()),
        artifact_location=settings.mlflow_artifact_location(),
        ui_url=settings.mlflow_ui_url(),
    )


def build_resources(assets: Iterable[dg.AssetsDefinition] = ()) -> dict[str, Any]:
    """The resources as the environment (docs/settings in README) configures them; the lake
    learns where each asset's table is from the assets' definitions."""
    assets = list(assets)
    lake = LakeResource(root=str(settings.lake_dir()), tables=lake_tables(assets))
    online_store = _url(settings.ONLINE_STORE_URL_VAR, settings.default_online_store_url())
    return {
        "crm_db": SourceDatabase(
            name="crm", url=_url(settings.CRM_URL_VAR, settings.default_crm_url())
        ),
        "orders_db": SourceDatabase(
            name="orders", url=_url(settings.ORDERS_URL_VAR, settings.default_orders_url())
        ),
        "lake": lake,
        "pyspark": spark_resource(),
        "feature_store": feature_store(assets, lake, online_store),
        "model_registry": model_registry(),
        "promotion_policy": PromotionPolicy(),
        "slack_alerts": slack_alerts(),
    }


__all__ = [
    "FeatureStoreResource",
    "LakeResource",
    "ModelRegistry",
    "PromotionPolicy",
    "SlackAlerts",
    "SourceDatabase",
    "build_resources",
    "feast_view_assets",
]
