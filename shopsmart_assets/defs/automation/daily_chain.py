"""The daily chain for yesterday, as soon as every hour of its orders is in: 24, or 23 and 25
on DST days (other counts in zones with odd rules). Never on an incomplete day; one run per
day.

Why a sensor, not a declarative automation condition: `eager()` or `on_cron()` over the daily
assets would start each asset by itself as its own inputs land, several runs a night, each
alerting on its own; the chain here is one run (one Spark session for purchases and
features, one page at 2 AM), started when the day is complete in the raw zone and not at all
when a backfill has built the day already. The recovery sensors say why they are sensors too
(docs/reliability.md).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg

from shopsmart_assets import settings
from shopsmart_assets.defs.automation.jobs import ChainJobs
from shopsmart_assets.defs.automation.partition_status import incomplete
from shopsmart_assets.defs.automation.schedules import missing_hours
from shopsmart_assets.defs.automation.switch import sensor_status
from shopsmart_assets.partitions import Partitions, hour_of

SHOWN_HOURS = 6  # missing hours named in a tick's skip reason


def daily_chain_request(
    instance: dg.DagsterInstance,
    partitions: Partitions,
    hourly_keys: list[dg.AssetKey],
    now: datetime,
    daily_keys: list[dg.AssetKey] | None = None,
) -> dg.RunRequest | dg.SkipReason:
    """The daily chain for the day that ended before `now`, once all its hours are in, unless
    every daily asset of that day is already materialized (by a backfill or by hand: late
    changes have their own sensor)."""
    day = partitions.previous_day_key(now)
    if day is None:
        return dg.SkipReason("no day has ended yet")
    if daily_keys and not incomplete(instance, daily_keys, partitions.daily, [day]):
        return dg.SkipReason(f"the daily chain of {day} is already materialized")
    missing = missing_hours(instance, partitions, hourly_keys, day)
    if missing:
        shown = ", ".join(hour_of(key) for key in missing[:SHOWN_HOURS])
        more = " …" if len(missing) > SHOWN_HOURS else ""
        return dg.SkipReason(
            f"waiting for {len(missing)} hourly order partitions of {day}: {shown}{more}"
        )
    return dg.RunRequest(run_key=f"daily-chain-{day}", partition_key=day)


def build_daily_chain_sensor(partitions: Partitions, jobs: ChainJobs) -> dg.SensorDefinition:
    @dg.sensor(
        job=jobs.daily,
        minimum_interval_seconds=settings.sensor_interval(60),
        default_status=sensor_status(),
        description="Starts the daily chain for yesterday as soon as every hour of its orders "
        "is in the lake; never on an incomplete day. One run per day (run key "
        "daily-chain-<day>), so that a night is one run in the UI and one alert.",
    )
    def daily_chain_sensor(context: dg.SensorEvaluationContext):
        now = datetime.now(ZoneInfo(partitions.timezone))
        return daily_chain_request(
            context.instance, partitions, jobs.hourly_keys, now, jobs.daily_keys
        )

    return daily_chain_sensor
