"""Freshness: yesterday's purchases, features and champion model are in by the deadline.

The assets carry their own blocking checks (`lake/purchases` reconciles with the source;
`ml/purchase_model` gates the champion). Freshness uses Dagster's own time-partition freshness
checks: after SHOPSMART_FRESHNESS_DEADLINE (06:00 local time by default) the newest daily
partition that has ended must be materialized. They run with the daily chain (so a late day
turns green as soon as it lands) and at each deadline from Dagster's freshness sensor; a
failure at the deadline shows red in the UI and `slack_on_failed_freshness` alerts.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from shopsmart_assets import settings
from shopsmart_assets.defs.automation.switch import sensor_status
from shopsmart_assets.defs.features.assets import CUSTOMER_FEATURES_KEY
from shopsmart_assets.defs.lake.assets import PURCHASES_KEY
from shopsmart_assets.defs.ml import CHAMPION_MODEL_KEY
from shopsmart_assets.partitions import Partitions

# What the business expects every morning.
FRESH_BY_DEADLINE = (PURCHASES_KEY, CUSTOMER_FEATURES_KEY, CHAMPION_MODEL_KEY)
FRESHNESS_SENSOR = "freshness_checks_sensor"


def deadline_cron() -> str:
    hours, minutes = (int(part) for part in settings.freshness_deadline().split(":"))
    return f"{minutes} {hours} * * *"


@dataclass(frozen=True)
class Freshness:
    checks: Sequence[dg.AssetChecksDefinition]
    sensor: dg.SensorDefinition

    @property
    def check_keys(self) -> list[dg.AssetCheckKey]:
        return [key for check in self.checks for key in check.check_keys]


def build_freshness(partitions: Partitions) -> Freshness:
    """Dagster's time-partition freshness checks and the sensor that evaluates them at the
    deadline. Dagster 1.12+ marks them superseded by `FreshnessPolicy`, but that policy looks
    at an asset's last update, not at its partitions: a backfill of an old day would make it
    look fresh while yesterday is missing. These check the partition itself."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        checks = dg.build_time_partition_freshness_checks(
            assets=list(FRESH_BY_DEADLINE),
            deadline_cron=deadline_cron(),
            timezone=partitions.timezone,
            severity=dg.AssetCheckSeverity.ERROR,
        )
        sensor = dg.build_sensor_for_freshness_checks(
            freshness_checks=checks,
            minimum_interval_seconds=settings.sensor_interval(60),
            name=FRESHNESS_SENSOR,
            default_status=sensor_status(),
        )
    return Freshness(checks=checks, sensor=sensor)
