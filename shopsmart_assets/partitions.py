"""The partition definitions, in one place.

Daily partitions follow midnight in the company time zone; order extraction is hourly and each
daily partition depends on its 24 hours (Dagster's default time-window mapping).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from shopsmart_assets import settings

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=settings.start_date(), timezone=settings.timezone()
)
hourly_partitions = dg.HourlyPartitionsDefinition(
    start_date=f"{settings.start_date()}-00:00", timezone=settings.timezone()
)


def day_of(partition_key: str) -> date:
    """The calendar day of a daily (YYYY-MM-DD) or hourly (YYYY-MM-DD-HH:MM) partition key."""
    return date.fromisoformat(partition_key[:10])


def hour_of(partition_key: str) -> int:
    """The hour of an hourly partition key (YYYY-MM-DD-HH:MM)."""
    return int(partition_key[11:13])


def _local(at: datetime) -> datetime:
    zone = ZoneInfo(settings.timezone())
    return at.astimezone(zone) if at.tzinfo else at.replace(tzinfo=zone)


def previous_hour_key(at: datetime) -> str:
    """The hourly partition that ended at or before `at`."""
    start = _local(at).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    return start.strftime("%Y-%m-%d-%H:%M")


def previous_day_key(at: datetime) -> str:
    """The daily partition that ended at or before `at` (yesterday, in the company zone)."""
    return (_local(at).date() - timedelta(days=1)).isoformat()
