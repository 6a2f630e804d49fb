"""The partition definitions, in one place.

Daily partitions follow midnight in the company time zone (SHOPSMART_TIMEZONE, any IANA zone);
order extraction is hourly, and a daily partition depends on the hours inside it: 24 on most
days, 23 or 25 on DST days, other counts in zones with odd rules (Dagster's time-window
mapping). Built when the definitions are loaded, from the settings of that moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import dagster as dg

from shopsmart_assets import settings


@dataclass(frozen=True)
class Partitions:
    """The two partition definitions every asset uses."""

    daily: dg.DailyPartitionsDefinition
    hourly: dg.HourlyPartitionsDefinition

    @property
    def timezone(self) -> str:
        return self.daily.timezone

    def hours_of_day(self, day_key: str) -> list[str]:
        """The hourly partition keys inside a daily partition (DST repeats included)."""
        window = self.daily.time_window_for_partition_key(day_key)
        return list(self.hourly.get_partition_keys_in_time_window(window))

    def previous_hour_key(self, at: datetime) -> str | None:
        """The last hourly partition that ended at or before `at`."""
        return last_ended(self.hourly, at)

    def previous_day_key(self, at: datetime) -> str | None:
        """The last daily partition that ended at or before `at` (yesterday, locally)."""
        return last_ended(self.daily, at)


def last_ended(partitions_def: dg.TimeWindowPartitionsDefinition, at: datetime) -> str | None:
    """The key of the last partition whose window ended at or before `at` (None before the
    first one has ended)."""
    first = partitions_def.get_first_partition_window()
    if first is None or first.end.timestamp() > at.timestamp():
        return None
    # the partition whose window (start, end] holds `at`; if it has not ended, the one before
    key = partitions_def.get_partition_key_for_timestamp(at.timestamp(), end_closed=True)
    window = partitions_def.time_window_for_partition_key(key)
    if window.end.timestamp() > at.timestamp():
        key = partitions_def.get_partition_key_for_timestamp(
            window.start.timestamp(), end_closed=True
        )
    return key


def build_partitions(start_date: str | None = None, timezone: str | None = None) -> Partitions:
    """The partitions for SHOPSMART_START_DATE and SHOPSMART_TIMEZONE (or the given values)."""
    start = start_date or settings.start_date()
    zone = timezone or settings.timezone()
    return Partitions(
        daily=dg.DailyPartitionsDefinition(start_date=start, timezone=zone),
        hourly=dg.HourlyPartitionsDefinition(start_date=f"{start}-00:00", timezone=zone),
    )
