"""Jobs (and, with the orchestration work, schedules and sensors)."""

from __future__ import annotations

import dagster as dg

from shopsmart_assets.assets.raw import ORDER_ITEMS_KEY, ORDERS_KEY

hourly_orders = dg.AssetSelection.assets(ORDERS_KEY, ORDER_ITEMS_KEY)
daily_chain = dg.AssetSelection.all() - hourly_orders

hourly_orders_job = dg.define_asset_job(
    "hourly_orders_job",
    selection=hourly_orders,
    description="Extract the hour's orders and order items into the raw zone.",
)
daily_chain_job = dg.define_asset_job(
    "daily_chain_job",
    selection=daily_chain,
    description="The daily chain: CRM extract, purchases (Spark), features (Spark), online "
    "store, training set, model and champion, for one day or a range.",
)
