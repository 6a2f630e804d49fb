"""Resources: source databases, the lake, Spark, the online store and the promotion policy."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import dagster as dg

from shopsmart_assets import settings
from shopsmart_assets.resources.lake import LakeResource, lake_tables
from shopsmart_assets.resources.online_store import OnlineStoreResource
from shopsmart_assets.resources.promotion import PromotionPolicy
from shopsmart_assets.resources.slack import SlackAlerts, slack_alerts
from shopsmart_assets.resources.sources import SourceDatabase
from shopsmart_assets.resources.spark import spark_resource


def _url(var: str, default: str) -> str | dg.EnvVar:
    """A URL from the environment through EnvVar (kept out of the UI), else the default."""
    return dg.EnvVar(var) if settings.is_set(var) else default


def build_resources(assets: Iterable[dg.AssetsDefinition] = ()) -> dict[str, Any]:
    """The resources as the environment (docs/settings in README) configures them; the lake
    learns where each asset's table is from the assets' definitions."""
    return {
        "crm_db": SourceDatabase(
            name="crm", url=_url(settings.CRM_URL_VAR, settings.default_crm_url())
        ),
        "orders_db": SourceDatabase(
            name="orders", url=_url(settings.ORDERS_URL_VAR, settings.default_orders_url())
        ),
        "lake": LakeResource(root=str(settings.lake_dir()), tables=lake_tables(assets)),
        "pyspark": spark_resource(),
        "online_store": OnlineStoreResource(
            url=_url(settings.ONLINE_STORE_URL_VAR, settings.default_online_store_url())
        ),
        "promotion_policy": PromotionPolicy(),
        "slack_alerts": slack_alerts(),
    }


__all__ = [
    "LakeResource",
    "OnlineStoreResource",
    "PromotionPolicy",
    "SlackAlerts",
    "SourceDatabase",
    "build_resources",
]
