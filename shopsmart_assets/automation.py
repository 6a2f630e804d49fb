"""How the pipeline runs itself: jobs, schedules and the sensor that starts the daily chain.

- During trading hours (Mon–Fri 09:00–18:00 by default), each hour's orders are extracted
  at the end of the hour (`hourly_orders_schedule`).
- At midnight, the hours of the day just ended that are still missing (nights, weekends, any
  failed hour) are extracted in one run (`midnight_catchup_schedule`).
- As soon as all 24 hours of a day are in, `daily_chain_sensor` starts the daily chain for
  that day: CRM, purchases, features, online store, training set, model, champion. It never
  starts on an incomplete day.
All times are in SHOPSMART_TIMEZONE.
"""

from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from shopsmart_assets import settings
from shopsmart_assets.assets.lake import hours_of_day
from shopsmart_assets.assets.raw import ORDER_ITEMS_KEY, ORDERS_KEY
from shopsmart_assets.checks import deadline_cron, freshness_checks
from shopsmart_assets.partitions import previous_day_key, previous_hour_key

hourly_orders = dg.AssetSelection.assets(ORDERS_KEY, ORDER_ITEMS_KEY)
# Freshness checks run at their deadline (freshness_schedule), not inside the chain's runs.
daily_chain = dg.AssetSelection.all() - hourly_orders - dg.AssetSelection.checks(*freshness_checks)

hourly_orders_job = dg.define_asset_job(
    "hourly_orders_job",
    selection=hourly_orders,
    description="Extract orders and order items of an hour (or a range of hours) into the "
    "raw zone.",
)
daily_chain_job = dg.define_asset_job(
    "daily_chain_job",
    selection=daily_chain,
    description="The daily chain: CRM extract, purchases (Spark), features (Spark), online "
    "store, training set, model and champion, for one day or a range.",
)


def range_tags(first: str, last: str) -> dict[str, str]:
    """Run tags that make one run cover partitions first..last (single-run backfill)."""
    return {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}


def missing_order_hours(instance: dg.DagsterInstance, day_key: str) -> list[str]:
    """The hourly partitions of `day_key` that raw/orders or raw/order_items lack."""
    present = instance.get_materialized_partitions(ORDERS_KEY) & (
        instance.get_materialized_partitions(ORDER_ITEMS_KEY)
    )
    hours = [f"{day}-{hour:02d}:00" for day, hour in hours_of_day(day_key)]
    return [key for key in hours if key not in present]


SCHEDULE_STATUS = (
    dg.DefaultScheduleStatus.RUNNING
    if settings.automation_on()
    else dg.DefaultScheduleStatus.STOPPED
)
SENSOR_STATUS = (
    dg.DefaultSensorStatus.RUNNING if settings.automation_on() else dg.DefaultSensorStatus.STOPPED
)


def trading_hours_cron() -> str:
    """Runs at the end of every trading hour: 10:00 … 18:00 for 09-18."""
    start, end = settings.business_hours()
    return f"0 {start + 1}-{end} * * {settings.business_days()}"


@dg.schedule(
    cron_schedule=trading_hours_cron(),
    job=hourly_orders_job,
    execution_timezone=settings.timezone(),
    default_status=SCHEDULE_STATUS,
    description="During trading hours, extract each hour's orders when the hour ends "
    "(SHOPSMART_BUSINESS_HOURS, SHOPSMART_BUSINESS_DAYS).",
)
def hourly_orders_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    key = previous_hour_key(context.scheduled_execution_time)
    return dg.RunRequest(run_key=key, partition_key=key)


@dg.schedule(
    cron_schedule="0 0 * * *",
    job=hourly_orders_job,
    execution_timezone=settings.timezone(),
    default_status=SCHEDULE_STATUS,
    description="At midnight, extract in one run every hour of the day just ended that is "
    "still missing, so that the daily chain can start.",
)
def midnight_catchup_schedule(
    context: dg.ScheduleEvaluationContext,
) -> dg.RunRequest | dg.SkipReason:
    day = previous_day_key(context.scheduled_execution_time)
    missing = missing_order_hours(context.instance, day)
    if not missing:
        return dg.SkipReason(f"all hourly order partitions of {day} are in")
    return dg.RunRequest(run_key=f"catchup-{day}", tags=range_tags(missing[0], missing[-1]))


def daily_chain_request(
    instance: dg.DagsterInstance, now: datetime
) -> dg.RunRequest | dg.SkipReason:
    """The daily chain for the day that ended before `now`, once all its hours are in."""
    day = previous_day_key(now)
    missing = missing_order_hours(instance, day)
    if missing:
        shown = ", ".join(key[11:] for key in missing[:6]) + (" …" if len(missing) > 6 else "")
        return dg.SkipReason(
            f"waiting for {len(missing)} hourly order partitions of {day}: {shown}"
        )
    return dg.RunRequest(run_key=f"daily-chain-{day}", partition_key=day)


freshness_job = dg.define_asset_job(
    "freshness_job",
    selection=dg.AssetSelection.checks(*freshness_checks),
    description="Checks that yesterday's purchases, features and champion model are in.",
)


@dg.schedule(
    cron_schedule=deadline_cron(),
    job=freshness_job,
    execution_timezone=settings.timezone(),
    default_status=SCHEDULE_STATUS,
    description="At the freshness deadline (SHOPSMART_FRESHNESS_DEADLINE, default 06:00), "
    "check that yesterday's partitions are in; failures alert like a failed run.",
)
def freshness_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return dg.RunRequest(run_key=f"freshness-{context.scheduled_execution_time:%Y-%m-%d}")


@dg.sensor(
    job=daily_chain_job,
    minimum_interval_seconds=60,
    default_status=SENSOR_STATUS,
    description="Starts the daily chain for yesterday as soon as all 24 hours of its orders "
    "are in the lake; never on an incomplete day.",
)
def daily_chain_sensor(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    return daily_chain_request(context.instance, datetime.now(ZoneInfo(settings.timezone())))
