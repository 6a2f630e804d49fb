"""The partition definitions, in one place.

Daily partitions follow midnight in the company time zone (SHOPSMART_TIMEZONE, any IANA zone);
order extraction is hourly, and a daily partition depends on the hours inside it: 24 on most
days, 23 or 25 on DST days, other counts in zones with odd rules (Dagster's time-window
mapping). Built when the definitions are loaded, from the settings of that moment.

Hourly partitions start on the local hour (HH:00 on the company's clocks), so that the hours
of every day tile it exactly, from its midnight to the next. Dagster's plain hourly schedule
(`0 * * * *`) steps 60 minutes at a time in UTC, which is the same thing wherever every UTC
offset change of the zone is a whole number of hours; after a shift of 30 minutes (Lord Howe
Island, +10:30 ⇄ +11:00) it would go on at half past, and a day's hours would no longer start
at its midnight. In such a zone the hourly partitions use a cron that Dagster steps through
local wall-clock time instead (croniter): on the local hour, every day, DST included. It costs
about ten times more per partition key, so it is used only where it is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from shopsmart_assets import settings

HOURLY_FORMAT = "%Y-%m-%d-%H:%M"
DAY_KEY_LENGTH = len("2026-01-01")  # every partition key starts with its local date
# Dagster's plain hourly cron: one hour after another, 60 minutes apart in UTC.
UTC_STEPPED_HOURLY = "0 * * * *"
# Every local HH:00 of every day. The same instants as `0 * * * *` read as a local clock, but
# restricted (in full) day-of-month and day-of-week fields that croniter keeps as written:
# Dagster then does not treat it as its plain hourly schedule and steps through local
# wall-clock time, skipping hours a DST gap removes and giving a repeated hour both times
# (like its hourly partitions). Pinned for every zone by test_lake_layout.py.
WALL_CLOCK_HOURLY = "0 * 1-31 1-12 0-6"
# Partition keys by asset: what a backfill asks for, what a change reaches.
AssetPartitions = dict[dg.AssetKey, list[str]]
# How far past the partitions' start (or today, if later) the zone's offsets are examined.
OFFSET_HORIZON = timedelta(days=3 * 366)


def day_of(partition_key: str) -> str:
    """The local date (YYYY-MM-DD) a daily or hourly partition key starts with."""
    return partition_key[:DAY_KEY_LENGTH]


def hour_of(hourly_key: str) -> str:
    """The local time of an hourly partition key, `01:00` (`01:00-0500` for a repeated hour)."""
    return hourly_key[DAY_KEY_LENGTH + 1 :]


@dataclass(frozen=True)
class Partitions:
    """The two partition definitions every asset uses."""

    daily: dg.DailyPartitionsDefinition
    hourly: dg.TimeWindowPartitionsDefinition

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


def shifts_by_whole_hours(zone: str, first: date, last: date) -> bool:
    """Whether every UTC offset the zone has between two days is a whole number of hours away
    from its first one (sampled every 6 hours: no zone shifts twice within that)."""
    tz = ZoneInfo(zone)
    at = datetime(first.year, first.month, first.day, tzinfo=tz)
    reference = at.utcoffset()
    end = datetime(last.year, last.month, last.day, tzinfo=tz)
    step = timedelta(hours=6)
    while at <= end:
        if (at.astimezone(tz).utcoffset() - reference) % timedelta(hours=1):
            return False
        at += step
    return True


def hourly_cron(zone: str, start: date, today: date | None = None) -> str:
    """The cron of the hourly partitions: Dagster's plain hourly one where stepping 60 minutes
    in UTC keeps to the local hour, over the partitions' years so far and the next three;
    the wall-clock one otherwise."""
    first = max(start, today or date.today())
    return (
        UTC_STEPPED_HOURLY
        if shifts_by_whole_hours(zone, start, first + OFFSET_HORIZON)
        else WALL_CLOCK_HOURLY
    )


def hourly_partitions(start: str, zone: str) -> dg.TimeWindowPartitionsDefinition:
    """Hourly partitions from local midnight of `start`, each starting on the local hour."""
    cron = hourly_cron(zone, date.fromisoformat(start))
    if cron == UTC_STEPPED_HOURLY:
        return dg.HourlyPartitionsDefinition(start_date=f"{start}-00:00", timezone=zone)
    return dg.TimeWindowPartitionsDefinition(
        start=f"{start}-00:00", fmt=HOURLY_FORMAT, cron_schedule=cron, timezone=zone
    )


def build_partitions(start_date: str | None = None, timezone: str | None = None) -> Partitions:
    """The partitions for SHOPSMART_START_DATE and SHOPSMART_TIMEZONE (or the given values)."""
    start = start_date or settings.start_date()
    zone = timezone or settings.timezone()
    return Partitions(
        daily=dg.DailyPartitionsDefinition(start_date=start, timezone=zone),
        hourly=hourly_partitions(start, zone),
    )
