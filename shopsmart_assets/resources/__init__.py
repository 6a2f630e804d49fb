"""Resources: source databases, the lake, Spark, Feast, MLflow and the promotion policy."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
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


def env_or_default(var: str, default: str, root: Path | None = None) -> str | dg.EnvVar:
    """A URL from the environment through EnvVar (kept out of the UI), else the default; for
    a data directory of one's own (`root`), always its local default."""
    return dg.EnvVar(var) if root is None and settings.is_set(var) else default


def feature_store(
    assets: Iterable[dg.AssetsDefinition], lake: LakeResource, root: Path | None = None
) -> FeatureStoreResource:
    """Feast over the lake tables its views read (from the assets' definitions)."""
    return FeatureStoreResource(
        online_store=env_or_default(
            settings.ONLINE_STORE_URL_VAR, settings.default_online_store_url(root), root
        ),
        registry=env_or_default(
            settings.FEAST_REGISTRY_VAR, settings.default_feast_registry(root), root
        ),
        repo_dir=str(settings.feast_dir(root)),
        view_tables={
            view: str(lake.table_dir(key)) for view, key in feast_view_assets(assets).items()
        },
    )


def model_registry(root: Path | None = None) -> ModelRegistry:
    return ModelRegistry(
        tracking_uri=env_or_default(
            settings.MLFLOW_TRACKING_URI_VAR, settings.default_mlflow_tracking_uri(root), root
        ),
        artifact_location=settings.mlflow_artifact_location(root),
        ui_url=settings.mlflow_ui_url(),
    )


def build_resources(
    assets: Iterable[dg.AssetsDefinition] = (), data_dir: Path | None = None, **overrides: Any
) -> dict[str, Any]:
    """The resources as the environment (docs/settings in README) configures them, with
    `overrides` by resource key; the lake learns where each asset's table is from the assets'
    definitions. With `data_dir`, a data directory of one's own (a test, a tool) with its
    local defaults (SQLite sources, Feast's files, MLflow's store), whatever the environment
    names."""
    assets = list(assets)
    root = data_dir
    lake = LakeResource(root=str(settings.lake_dir(root)), tables=lake_tables(assets))
    crm_url = env_or_default(settings.CRM_URL_VAR, settings.default_crm_url(root), root)
    orders_url = env_or_default(settings.ORDERS_URL_VAR, settings.default_orders_url(root), root)
    return {
        "crm_db": SourceDatabase(name="crm", url=crm_url),
        "orders_db": SourceDatabase(name="orders", url=orders_url),
        "lake": lake,
        "pyspark": spark_resource(),
        "feature_store": feature_store(assets, lake, root),
        "model_registry": model_registry(root),
        "promotion_policy": PromotionPolicy(),
        "slack_alerts": slack_alerts(),
        **overrides,
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
