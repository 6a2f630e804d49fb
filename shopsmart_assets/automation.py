"""How the pipeline runs itself: jobs, schedules and the sensor that starts the daily chain.

- During trading hours (Mon–Fri 09:00–18:00 by default), each hour's orders are extracted
  at the end of the hour (`hourly_orders_schedule`).
- At midnight, the hours of the day just ended that are still missing (nights, weekends, any
  failed hour) are extracted in one run (`midnight_catchup_schedule`).
- As soon as every hour of a day is in (24, or 23 and 25 on DST days), `daily_chain_sensor`
  starts the daily chain for that day, as one run: CRM, purchases, features, online store,
  training set, model, champion. It never starts on an incomplete day.
All times are in SHOPSMART_TIMEZONE; the asset lists come from the definitions (lineage).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg

from shopsmart_assets import settings
from shopsmart_assets.lineage import Lineage
from shopsmart_assets.partitions import Partitions

# Dagster's documented run tags for one run over a range of partitions (single-run backfills).
PARTITION_RANGE_START = "dagster/asset_partition_range_start"
PARTITION_RANGE_END = "dagster/asset_partition_range_end"


def range_tags(first: str, last: str) -> dict[str, str]:
    """Run tags that make one run cover partitions first..last."""
    return {PARTITION_RANGE_START: first, PARTITION_RANGE_END: last}


def schedule_status() -> dg.DefaultScheduleStatus:
    return (
        dg.DefaultScheduleStatus.RUNNING
        if settings.automation_on()
        else dg.DefaultScheduleStatus.STOPPED
    )


def sensor_status() -> dg.DefaultSensorStatus:
    return (
        dg.DefaultSensorStatus.RUNNING
        if settings.automation_on()
        else dg.DefaultSensorStatus.STOPPED
    )


def trading_hours_cron() -> str:
    """Runs at the end of every trading hour: 10:00 … 18:00 for 09-18; the hour that ends at
    24:00 is requested at midnight."""
    start, end = settings.business_hours()
    if end < 24:
        hours = f"{start + 1}-{end}"
    else:
        hours = "0" + (f",{start + 1}-23" if start + 1 <= 23 else "")
    return f"0 {hours} * * {settings.business_days()}"


def missing_hours(
    instance: dg.DagsterInstance, partitions: Partitions, hourly_keys: list[dg.AssetKey], day: str
) -> list[str]:
    """The hourly partitions of `day` that one of the hourly assets lacks."""
    hours = partitions.hours_of_day(day)
    statuses = [
        instance.get_status_by_partition(key, hours, partitions.hourly) or {} for key in hourly_keys
    ]
    return [
        hour
        for hour in hours
        if any(s.get(hour) != dg.AssetPartitionStatus.MATERIALIZED for s in statuses)
    ]


@dataclass(frozen=True)
class Automation:
    jobs: list[Any]  # unresolved asset jobs
    schedules: list[dg.ScheduleDefinition]
    sensors: list[dg.SensorDefinition]


def build_automation(partitions: Partitions, lineage: Lineage) -> Automation:
    """The jobs, schedules and the daily-chain sensor for these partitions and assets."""
    hourly_keys = lineage.partitioned_by(partitions.hourly)
    daily_keys = lineage.partitioned_by(partitions.daily)
    zone = partitions.timezone

    hourly_orders_job = dg.define_asset_job(
        "hourly_orders_job",
        selection=dg.AssetSelection.assets(*hourly_keys),
        description="Extract orders and order items of an hour (or a range of hours) into the "
        "raw zone.",
    )
    daily_chain_job = dg.define_asset_job(
        "daily_chain_job",
        # with the assets' checks: reconciliation, the promotion bar, freshness
        selection=dg.AssetSelection.assets(*daily_keys),
        description="The daily chain: CRM extract, purchases (Spark), features (Spark), online "
        "store, training set, model and champion, for one day or a range.",
    )

    @dg.schedule(
        cron_schedule=trading_hours_cron(),
        job=hourly_orders_job,
        execution_timezone=zone,
        default_status=schedule_status(),
        description="During trading hours, extract each hour's orders when the hour ends "
        "(SHOPSMART_BUSINESS_HOURS, SHOPSMART_BUSINESS_DAYS).",
    )
    def hourly_orders_schedule(context: dg.ScheduleEvaluationContext):
        key = partitions.previous_hour_key(context.scheduled_execution_time)
        if key is None:
            return dg.SkipReason("no hourly partition has ended yet")
        return dg.RunRequest(run_key=key, partition_key=key)

    @dg.schedule(
        cron_schedule="0 0 * * *",
        job=hourly_orders_job,
        execution_timezone=zone,
        default_status=schedule_status(),
        description="At midnight, extract in one run every hour of the day just ended that is "
        "still missing, so that the daily chain can start.",
    )
    def midnight_catchup_schedule(context: dg.ScheduleEvaluationContext):
        day = partitions.previous_day_key(context.scheduled_execution_time)
        if day is None:
            return dg.SkipReason("no day has ended yet")
        missing = missing_hours(context.instance, partitions, hourly_keys, day)
        if not missing:
            return dg.SkipReason(f"all hourly order partitions of {day} are in")
        return dg.RunRequest(run_key=f"catchup-{day}", tags=range_tags(missing[0], missing[-1]))

    @dg.sensor(
        job=daily_chain_job,
        minimum_interval_seconds=settings.sensor_interval(60),
        default_status=sensor_status(),
        description="Starts the daily chain for yesterday as soon as every hour of its orders "
        "is in the lake; never on an incomplete day. One run per day (run key "
        "daily-chain-<day>), so that a night is one run in the UI and one alert.",
    )
    def daily_chain_sensor(context: dg.SensorEvaluationContext):
        return daily_chain_request(
            context.instance, partitions, hourly_keys, datetime.now(ZoneInfo(zone)), daily_keys
        )

    return Automation(
        jobs=[hourly_orders_job, daily_chain_job],
        schedules=[hourly_orders_schedule, midnight_catchup_schedule],
        sensors=[daily_chain_sensor],
    )


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
    if daily_keys and all(
        (instance.get_status_by_partition(key, [day], partitions.daily) or {}).get(day)
        == dg.AssetPartitionStatus.MATERIALIZED
        for key in daily_keys
    ):
        return dg.SkipReason(f"the daily chain of {day} is already materialized")
    missing = missing_hours(instance, partitions, hourly_keys, day)
    if missing:
        shown = ", ".join(key[11:] for key in missing[:6]) + (" …" if len(missing) > 6 else "")
        return dg.SkipReason(
            f"waiting for {len(missing)} hourly order partitions of {day}: {shown}"
        )
    return dg.RunRequest(run_key=f"daily-chain-{day}", partition_key=day)
