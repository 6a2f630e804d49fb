"""The partition definitions, in one place.

Daily partitions follow midnight in the company time zone; order extraction is hourly and each
daily partition depends on its 24 hours (Dagster's default time-window mapping).
"""

from __future__ import annotations

from datetime import date

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
