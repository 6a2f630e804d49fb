"""The ShopSmart code location: `defs` is what Dagster loads (workspace.yaml)."""

from __future__ import annotations

import dagster as dg

from shopsmart_assets.alerts import build_alert_sensors
from shopsmart_assets.assets import features, lake, ml, raw
from shopsmart_assets.automation import (
    daily_chain_job,
    daily_chain_sensor,
    freshness_job,
    freshness_schedule,
    hourly_orders_job,
    hourly_orders_schedule,
    midnight_catchup_schedule,
)
from shopsmart_assets.checks import freshness_checks
from shopsmart_assets.recovery import late_orders_sensor, recovery_sensor
from shopsmart_assets.resources import build_resources

all_assets = dg.load_assets_from_modules([raw, lake, features, ml])
resources = build_resources()

defs = dg.Definitions(
    assets=all_assets,
    asset_checks=freshness_checks,
    jobs=[hourly_orders_job, daily_chain_job, freshness_job],
    schedules=[hourly_orders_schedule, midnight_catchup_schedule, freshness_schedule],
    sensors=[
        daily_chain_sensor,
        recovery_sensor,
        late_orders_sensor,
        *build_alert_sensors(resources["slack_alerts"]),
    ],
    resources=resources,
)
