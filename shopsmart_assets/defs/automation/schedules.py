"""The hourly extraction: each trading hour's orders when the hour ends, and at midnight every
hour of the day just ended that is still missing. All times in SHOPSMART_TIMEZONE.

Why not `build_schedule_from_partitioned_job`: for a time-partitioned job it fires at the end
of every partition and takes no cron (Dagster refuses one), so the trading-hours window
(SHOPSMART_BUSINESS_HOURS, SHOPSMART_BUSINESS_DAYS) cannot be said with it.
"""

from __future__ import annotations

import dagster as dg

from shopsmart_assets import settings
from shopsmart_assets.defs.automation.jobs import ChainJobs, range_tags
from shopsmart_assets.defs.automation.partition_status import incomplete
from shopsmart_assets.defs.automation.switch import schedule_status
from shopsmart_assets.partitions import Partitions


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
    return incomplete(instance, hourly_keys, partitions.hourly, partitions.hours_of_day(day))


def build_schedules(partitions: Partitions, jobs: ChainJobs) -> list[dg.ScheduleDefinition]:
    zone = partitions.timezone

    @dg.schedule(
        cron_schedule=trading_hours_cron(),
        job=jobs.hourly,
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
        job=jobs.hourly,
        execution_timezone=zone,
        default_status=schedule_status(),
        description="At midnight, extract in one run every hour of the day just ended that is "
        "still missing, so that the daily chain can start.",
    )
    def midnight_catchup_schedule(context: dg.ScheduleEvaluationContext):
        day = partitions.previous_day_key(context.scheduled_execution_time)
        if day is None:
            return dg.SkipReason("no day has ended yet")
        missing = missing_hours(context.instance, partitions, jobs.hourly_keys, day)
        if not missing:
            return dg.SkipReason(f"all hourly order partitions of {day} are in")
        return dg.RunRequest(run_key=f"catchup-{day}", tags=range_tags(missing[0], missing[-1]))

    return [hourly_orders_schedule, midnight_catchup_schedule]
