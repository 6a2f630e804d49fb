"""No two partitions share a lake path: every hourly and daily partition key Dagster makes for
a whole year, in every zone of the IANA database, maps to its own directory, and that
directory names the partition's true start.

Dagster's keys of a zone depend on nothing but the zone's UTC offsets over the period, so the
zones are grouped by their 2026 offset history (computed here with zoneinfo, independently of
the code under test) and each distinct history is checked with one zone of the group: all 599
zones are covered, at the cost of ~65 key generations instead of 599.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import datetime, timedelta, timezone

import dagster as dg

from shopsmart_assets.resources.lake import partition_subpath

UTC = timezone.utc
YEAR_START, YEAR_END = datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
HOUR_DIR = re.compile(r"^date=(\d{4}-\d\d-\d\d)/hour=(\d\d)(\d\d)([+-]\d{4})$")


def offset_history(name: str) -> tuple:
    """The zone's UTC offset at the start of 2026 (with a two-day margin) and each change
    during the year, to the minute, found by sampling twice a day and bisecting."""
    zone = zoneinfo.ZoneInfo(name)

    def offset(at: datetime) -> timedelta:
        return at.astimezone(zone).utcoffset()

    points = [YEAR_START - timedelta(days=2) + timedelta(hours=12 * i) for i in range(2 * 370)]
    offsets = [offset(p) for p in points]
    history: list = [offsets[0]]
    for a, b, before, after in zip(points, points[1:], offsets, offsets[1:], strict=False):
        if before == after:
            continue
        low, high = a, b
        while high - low > timedelta(minutes=1):
            middle = (low + (high - low) / 2).replace(second=0, microsecond=0)
            low, high = (middle, high) if offset(middle) == before else (low, middle)
        history.append((high, after))
    return tuple(history)


def zone_groups() -> dict[tuple, list[str]]:
    groups: dict[tuple, list[str]] = {}
    for name in sorted(zoneinfo.available_timezones()):
        groups.setdefault(offset_history(name), []).append(name)
    return groups


def start_named_by(path: str) -> datetime:
    """The instant an hourly directory names (date, local HHMM, UTC offset)."""
    day, hours, minutes, offset = HOUR_DIR.match(path).groups()
    return datetime.strptime(f"{day} {hours}{minutes} {offset}", "%Y-%m-%d %H%M %z")


def test_every_partition_of_a_year_has_its_own_path_in_every_zone():
    groups = zone_groups()
    assert sum(map(len, groups.values())) == len(zoneinfo.available_timezones()) > 500
    checked_zones, checked_keys, odd_days = 0, 0, 0
    for history, zones in groups.items():
        zone = zones[0]
        hourly = dg.HourlyPartitionsDefinition(
            start_date="2026-01-01-00:00", end_date="2027-01-01-00:00", timezone=zone
        )
        daily = dg.DailyPartitionsDefinition(
            start_date="2026-01-01", end_date="2027-01-01", timezone=zone
        )
        keys = hourly.get_partition_keys(current_time=YEAR_END + timedelta(days=2))
        paths = [partition_subpath(hourly, key) for key in keys]
        assert len(set(paths)) == len(keys) > 8000, zone  # no two hours share a directory
        days = daily.get_partition_keys(current_time=YEAR_END + timedelta(days=2))
        assert len({partition_subpath(daily, key) for key in days}) == len(days) == 365, zone
        # each directory names its partition's true start: checked on every key of the days
        # on which the zone's offset changes (and on the first day), against Dagster's windows
        changes = {str(YEAR_START.astimezone(zoneinfo.ZoneInfo(zone)).date())} | {
            str(at.astimezone(zoneinfo.ZoneInfo(zone)).date()) for at, _ in history[1:]
        }  # as ISO dates, the way keys start
        for key, path in zip(keys, paths, strict=True):
            if key[:10] in changes:
                start = hourly.time_window_for_partition_key(key).start
                assert start_named_by(path).timestamp() == start.timestamp(), (zone, key)
        # a day's hourly directories are all under that day's date=
        for day in days:
            if day in changes:
                window = daily.time_window_for_partition_key(day)
                inside = hourly.get_partition_keys_in_time_window(window)
                odd_days += len(inside) != 24
                assert {partition_subpath(hourly, k)[:15] for k in inside} == {f"date={day}"}
        checked_zones += len(zones)
        checked_keys += len(keys)
    assert checked_zones == len(zoneinfo.available_timezones())
    assert odd_days > 50  # DST days of 23, 25 (and other) hours were among those checked
