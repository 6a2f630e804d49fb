"""Where a table and a partition live in the lake: the path contract of docs/lake.md.

- An asset's definition metadata names its table (`lake_table("curated", "purchases")`).
- Its partitions definition turns a partition key into a Hive path from the partition's start:
  `date=YYYY-MM-DD` for daily partitions, `date=YYYY-MM-DD/hour=HHMM±HHMM` for hourly ones
  (local start time and UTC offset, ISO 8601 basic format). Two partitions never share a
  start instant, and (local date, local time, offset) names exactly one instant, so no two
  partitions can map to the same path, DST repeats and half-hour zones included.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg

from shopsmart_assets.partitions import DAY_KEY_LENGTH, HOURLY_FORMAT, day_of

ZONES = ("raw", "curated", "features", "quarantine", "models", "scores")
LAKE_TABLE = "shopsmart/lake_table"  # definition metadata: "<zone>/<table>"
_TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
DAILY_FORMAT = "%Y-%m-%d"


def lake_table(zone: str, table: str, **more: str) -> dict[str, Any]:
    """Definition metadata placing an asset in the lake as `<zone>/<table>`; an asset that
    writes more than one table names the others by role, e.g. `quarantine="quarantine/x"`.
    (Their documented columns are added to every asset in one place,
    defs/column_catalog.py.)"""
    metadata: dict[str, Any] = {LAKE_TABLE: table_location(zone, table)}
    for role, other in more.items():
        metadata[f"{LAKE_TABLE}#{role}"] = table_location(*other.split("/", 1))
    return metadata


def table_location(zone: str, table: str) -> str:
    """`<zone>/<table>`, checked: a known zone and a lower_snake_case name."""
    if zone not in ZONES:
        raise ValueError(f"unknown lake zone {zone!r}; zones are {', '.join(ZONES)}")
    if not _TABLE_NAME.match(table):
        raise ValueError(f"lake table names are lower_snake_case, got {table!r}")
    return f"{zone}/{table}"


def table_id(key: dg.AssetKey, role: str | None = None) -> str:
    """`raw/orders`, or `lake/purchases#quarantine` for a table an asset writes besides its own."""
    return key.to_user_string() + (f"#{role}" if role else "")


def _specs(assets: Iterable[dg.AssetsDefinition | dg.AssetSpec]) -> list[dg.AssetSpec]:
    return [s for a in assets for s in (a.specs if isinstance(a, dg.AssetsDefinition) else [a])]


def lake_tables(assets: Iterable[dg.AssetsDefinition | dg.AssetSpec]) -> dict[str, str]:
    """Table id → `<zone>/<table>` for every table the assets declare."""
    return {
        spec.key.to_user_string() + name.removeprefix(LAKE_TABLE): location
        for spec in _specs(assets)
        for name, location in (spec.metadata or {}).items()
        if name == LAKE_TABLE or name.startswith(f"{LAKE_TABLE}#")
    }


def table_partition_columns(
    assets: Iterable[dg.AssetsDefinition | dg.AssetSpec],
) -> dict[str, tuple[str, ...]]:
    """`<zone>/<table>` → its partition columns, for every table the assets declare."""
    return {
        location: partition_columns(spec.partitions_def)
        for spec in _specs(assets)
        for name, location in (spec.metadata or {}).items()
        if name == LAKE_TABLE or name.startswith(f"{LAKE_TABLE}#")
    }


def partition_subpath(partitions_def: dg.PartitionsDefinition, partition_key: str) -> str:
    """The Hive path of a partition inside its table, from the partition's start instant.

    Daily (or coarser): `date=YYYY-MM-DD`. Finer than a day: `date=YYYY-MM-DD/hour=HHMM±HHMM`,
    the local start time and UTC offset, e.g. `hour=0100-0400` and `hour=0100-0500` for the
    two 01:00 hours of a fall-back night in New York. Strings that are not partition keys of
    the definition (a local time a DST gap skips, anything with a slash) raise ValueError.
    """
    if not isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        raise TypeError(f"the lake holds time-partitioned tables, not {partitions_def!r}")
    zone = ZoneInfo(partitions_def.timezone)
    try:
        start = _partition_start(partitions_def, partition_key, zone)
    except ValueError as error:
        raise ValueError(f"{partition_key!r} is not a partition of {partitions_def}") from error
    # through UTC, so that a local time a DST gap skips moves to the time it really is
    start = start.astimezone(timezone.utc).astimezone(zone)
    # Dagster names a partition by its local start, adding the UTC offset to the second of two
    # equal local times (a fall-back repeat); any other string is not one of its keys.
    local = start.strftime(partitions_def.fmt)
    repeated = start.replace(fold=0).utcoffset() != start.utcoffset()
    if partition_key != (local + start.strftime("%z") if repeated else local):
        raise ValueError(f"{partition_key!r} is not a partition of {partitions_def}")
    if "%H" not in partitions_def.fmt:
        return f"date={start:%Y-%m-%d}"
    return f"date={start:%Y-%m-%d}/hour={start:%H%M%z}"


def _partition_start(
    partitions_def: dg.TimeWindowPartitionsDefinition, partition_key: str, zone: ZoneInfo
) -> datetime:
    """The start a partition key names. Dagster's daily and hourly keys are ISO dates and
    times (an hourly key may end in the UTC offset of a repeated hour, `…-01:00-0500`),
    parsed here in C; any other format through Dagster. The caller checks that the key is
    canonical."""
    hour_key_length = len("2026-01-01-01:00")
    if partitions_def.fmt == DAILY_FORMAT and len(partition_key) == DAY_KEY_LENGTH:
        return datetime.fromisoformat(partition_key).replace(tzinfo=zone)
    if partitions_def.fmt == HOURLY_FORMAT and len(partition_key) in (
        hour_key_length,
        hour_key_length + len("-0500"),
    ):
        day, clock = day_of(partition_key), partition_key[DAY_KEY_LENGTH + 1 : hour_key_length]
        local = datetime.fromisoformat(f"{day}T{clock}")
        if len(partition_key) == hour_key_length:
            return local.replace(tzinfo=zone)
        offset_text = partition_key[hour_key_length:]
        sign, hours, minutes = offset_text[0], offset_text[1:3], offset_text[3:5]
        if sign not in "+-" or not (hours + minutes).isdigit():
            raise ValueError(f"not a UTC offset: {offset_text!r}")
        offset = timedelta(hours=int(hours), minutes=int(minutes))
        return local.replace(tzinfo=timezone(offset if sign == "+" else -offset))
    return partitions_def.start_time_for_partition_key(partition_key)


def partition_columns(partitions_def: dg.PartitionsDefinition) -> tuple[str, ...]:
    """The Hive columns of a table's partitions: `date`, and `hour` for tables partitioned
    finer than a day (partition_subpath's levels)."""
    hourly = "%H" in getattr(partitions_def, "fmt", "")
    return ("date", "hour") if hourly else ("date",)


def part_file_name() -> str:
    """A file name no earlier version of a partition used: a reader that lists a partition
    and opens its files after a swap gets a clean 'not found', never a mix of versions."""
    return f"part-{uuid.uuid4().hex}.parquet"
