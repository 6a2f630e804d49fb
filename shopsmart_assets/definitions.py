"""The ShopSmart code location: `defs` is what Dagster loads (workspace.yaml)."""

from __future__ import annotations

import dagster as dg

from shopsmart_assets.assets import features, lake, ml, raw
from shopsmart_assets.automation import daily_chain_job, hourly_orders_job
from shopsmart_assets.resources import build_resources

all_assets = dg.load_assets_from_modules([raw, lake, features, ml])

defs = dg.Definitions(
    assets=all_assets,
    jobs=[hourly_orders_job, daily_chain_job],
    resources=build_resources(),
)
