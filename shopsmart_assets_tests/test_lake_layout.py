"""No two partitions share a lake path, and every day is made of its own hours: for every
hourly and daily partition key the platform's partitions give for a whole year, in every zone
of the IANA database,
- each key maps to its own directory, and that directory names the partition's true start;
- the hourly partitions a daily partition reads (the declared mapping of `lake/purchases` on
  `raw/orders`, as the daily assets ask for them) are hourly partitions that exist, lie under
  the day's `date=` directory, and tile the day: the first starts at its midnight, each starts
  where the one before ends, the last ends at the next midnight. Checked on every day of the
  year in every zone whose offset changes; a zone of one offset all year has one kind of day,
  checked on the first of each month and the last day.

Dagster's keys of a zone depend on nothing but the zone's UTC offsets over the period, so the
zones are grouped by their 2025 offset history (computed here with zoneinfo, independently of
the code under test) and each distinct history is checked with one zone of the group: all 599
zones are covered, at the cost of ~65 key generations instead of 599.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import datetime, timedelta, timezone

import dagster as dg

from shopsmart_assets.defs.asset_graph import upstream_partition_keys
from shopsmart_assets.lake import partition_subpath
from shopsmart_assets.partitions import build_partitions
from shopsmart_assets_tests.harness import CHAIN_GRAPH

UTC = timezone.utc
# a year that has passed: the upstream partitions of a day that has not come yet do not exist
YEAR_START, YEAR_END = datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
HOUR_DIR = re.compile(r"^date=(\d{4}-\d\d-\d\d)/hour=(\d\d)(\d\d)([+-]\d{4})$")
# what the daily assets read of the hours: lake/purchases' declared mapping on raw/orders
DAY_TO_HOURS = CHAIN_GRAPH.mapping(
    dg.AssetKey(["lake", "purchases"]), dg.AssetKey(["raw", "orders"])
)


def offset_history(name: str) -> tuple:
    """The zone's UTC offset at the start of 2025 (with a two-day margin) and each change
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
    sign = 1 if offset[0] == "+" else -1
    utc_offset = sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[3:]))
    local = datetime.fromisoformat(f"{day}T{hours}:{minutes}")
    return local.replace(tzinfo=timezone(utc_offset))


def untiled_days(
    hourly: dg.TimeWindowPartitionsDefinition,
    daily: dg.DailyPartitionsDefinition,
    paths: dict[str, str],
    days: list[str],
) -> list[str]:
    """The days whose upstream hours are not existing hourly partitions that tile the day.
    `paths`: the lake path of every hourly partition that exists, in Dagster's order; each
    runs from the start its path names to the start of the next one."""
    starts = {key: start_named_by(path).timestamp() for key, path in paths.items()}
    keys = list(paths)
    following = dict(zip(keys, keys[1:], strict=False))
    bad = []
    for day in days:
        window = daily.time_window_for_partition_key(day)
        hours = upstream_partition_keys(DAY_TO_HOURS, daily, hourly, [day])
        tiles = (
            bool(hours)
            and all(h in starts for h in hours)
            and all(following.get(a) == b for a, b in zip(hours, hours[1:], strict=False))
            and starts[hours[0]] == window.start.timestamp()
            and hours[-1] in following
            and starts[following[hours[-1]]] == window.end.timestamp()
            and all(paths[h].startswith(f"date={day}/") for h in hours)
        )
        if not tiles:
            bad.append(day)
    return bad


def test_every_partition_of_a_year_has_its_own_path_and_every_day_its_hours_in_every_zone():
    groups = zone_groups()
    assert sum(map(len, groups.values())) == len(zoneinfo.available_timezones()) > 500
    checked_zones, odd_days, odd_hour_zones = 0, 0, []
    for history, zones in groups.items():
        zone = zones[0]
        partitions = build_partitions(str(YEAR_START.date()), zone)
        hourly, daily = partitions.hourly, partitions.daily
        keys = hourly.get_partition_keys(current_time=YEAR_END + timedelta(days=2))
        paths = [partition_subpath(hourly, key) for key in keys]
        assert len(set(paths)) == len(keys) > 8000, zone  # no two hours share a directory
        days = daily.get_partition_keys(current_time=YEAR_END + timedelta(days=2))
        days = [d for d in days if d < str(YEAR_END.date())]
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
        # every day of the year reads hours that exist and tile it (a zone of one offset all
        # year has one kind of day: the first of each month and the last day stand for it)
        tiled = days if len(history) > 1 else [d for d in days if d.endswith("-01")] + days[-1:]
        assert untiled_days(hourly, daily, dict(zip(keys, paths, strict=True)), tiled) == [], zone
        odd_days += sum(len(partitions.hours_of_day(day)) != 24 for day in changes)
        if any(k[14:16] != "00" for k in keys):
            odd_hour_zones.append(zone)
        checked_zones += len(zones)
    assert checked_zones == len(zoneinfo.available_timezones())
    assert odd_days > 50  # DST days of 23, 25 (and other) hours were among those checked
    assert odd_hour_zones == []  # every hourly partition starts on the local hour
