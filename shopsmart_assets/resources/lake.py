"""The Parquet lake: one partition-aware layer between the assets and their files.

Where an asset's partition lives is derived from the definitions, in one place:
- the asset's definition metadata names its table (`lake_table("curated", "purchases")`);
- its partitions definition turns a partition key into a Hive path from the partition's start:
  `date=YYYY-MM-DD` for daily partitions, `date=YYYY-MM-DD/hour=HHMM±HHMM` for hourly ones
  (local start time and UTC offset, ISO 8601 basic format). Two partitions never share a
  start instant, and (local date, local time, offset) names exactly one instant, so no two
  partitions can map to the same path, DST repeats and half-hour zones included;
- the upstream partitions a step reads come from Dagster's own partition mappings of the
  asset (`asset_partition_keys_for_input`, or the declared mapping for one partition).

Writes go to `<root>/_staging/<id>/` and are swapped into place in one atomic exchange on the
same filesystem, so a reader sees the old partition or the new one, never a half-written one
or none, and re-running a partition replaces it instead of appending to it. Writers of the
same table publish one at a time; file names are never reused, and a replaced version is
deleted only after a grace period.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext, suppress
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pyarrow.dataset as ds

from shopsmart_assets.columns import column_schema, written_schema
from shopsmart_assets.lineage import declared_mapping, upstream_partition_keys
from shopsmart_assets.observability import (
    column_schema_key,
    count_rows,
    documented_schema,
    file_schema,
    partition_metadata,
    summary_metadata,
)
from shopsmart_assets.resources.lake_storage import storage_failures

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

ZONES = ("raw", "curated", "features", "quarantine", "models", "scores")
LAKE_TABLE = "shopsmart/lake_table"  # definition metadata: "<zone>/<table>"
_TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def lake_table(zone: str, table: str, **more: str) -> dict[str, Any]:
    """Definition metadata placing an asset in the lake as `<zone>/<table>`, with the table's
    documented columns (columns.py, shown in the UI before anything is materialized); an asset
    that writes more than one table names the others by role, e.g. `quarantine="quarantine/x"`."""
    location = _location(zone, table)
    metadata: dict[str, Any] = {LAKE_TABLE: location, **documented_schema(location)}
    for role, other in more.items():
        metadata[f"{LAKE_TABLE}#{role}"] = _location(*other.split("/", 1))
        metadata |= documented_schema(metadata[f"{LAKE_TABLE}#{role}"], role)
    return metadata


def _location(zone: str, table: str) -> str:
    if zone not in ZONES:
        raise ValueError(f"unknown lake zone {zone!r}; zones are {', '.join(ZONES)}")
    if not _TABLE_NAME.match(table):
        raise ValueError(f"lake table names are lower_snake_case, got {table!r}")
    return f"{zone}/{table}"


def table_id(key: dg.AssetKey, role: str | None = None) -> str:
    """`raw/orders`, or `lake/purchases#quarantine` for a table an asset writes besides its own."""
    return key.to_user_string() + (f"#{role}" if role else "")


def lake_tables(assets: Iterable[dg.AssetsDefinition | dg.AssetSpec]) -> dict[str, str]:
    """Table id → `<zone>/<table>` for every table the assets declare."""
    specs = [s for a in assets for s in (a.specs if isinstance(a, dg.AssetsDefinition) else [a])]
    return {
        spec.key.to_user_string() + name.removeprefix(LAKE_TABLE): location
        for spec in specs
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
    times (an hourly key may end in the UTC offset of a repeated hour), parsed here in C; any
    other format through Dagster. The caller checks that the key is canonical."""
    if partitions_def.fmt == "%Y-%m-%d" and len(partition_key) == 10:
        return datetime.fromisoformat(partition_key).replace(tzinfo=zone)
    if partitions_def.fmt == "%Y-%m-%d-%H:%M" and len(partition_key) in (16, 21):
        local = datetime.fromisoformat(f"{partition_key[:10]}T{partition_key[11:16]}")
        if len(partition_key) == 16:
            return local.replace(tzinfo=zone)
        sign, hours, minutes = partition_key[16], partition_key[17:19], partition_key[19:21]
        if sign not in "+-" or not (hours + minutes).isdigit():
            raise ValueError(f"not a UTC offset: {partition_key[16:]!r}")
        offset = timedelta(hours=int(hours), minutes=int(minutes))
        return local.replace(tzinfo=timezone(offset if sign == "+" else -offset))
    return partitions_def.start_time_for_partition_key(partition_key)


def read_parquet_dirs(
    paths: Mapping[str, Path], columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """Partition directories read with pandas, each row tagged with its partition key in a
    `partition` column; an empty frame with those columns when there are none."""
    frames = []
    for partition_key, path in paths.items():
        table = ds.dataset(path, format="parquet").to_table(
            columns=list(columns) if columns else None
        )
        frame = table.to_pandas()
        frame.insert(0, "partition", partition_key)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["partition", *(columns or [])])
    return pd.concat(frames, ignore_index=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 with RENAME_EXCHANGE). False where the
    kernel, libc or filesystem does not offer it; the caller then falls back to renames."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def part_file_name() -> str:
    """A file name no earlier version of a partition used: a reader that lists a partition
    and opens its files after a swap gets a clean 'not found', never a mix of versions."""
    return f"part-{uuid.uuid4().hex}.parquet"


class MissingPartitionError(FileNotFoundError):
    """An upstream partition the step needs is not in the lake."""


def heal_command(first_missing: str, last_needed_by: str) -> str:
    """The command that builds the whole chain from the day of a missing partition to the day
    of the partition that needs it (both keys start with their local date)."""
    return f"shopsmart-backfill --from {first_missing[:10]} --to {last_needed_by[:10]}"


# No _SUCCESS markers in the lake, whichever Spark (local, Connect, cluster) writes.
NO_SUCCESS_MARKER = {"mapreduce.fileoutputcommitter.marksuccessfuljobs": "false"}


class LakeResource(dg.ConfigurableResource):
    """The lake's root directory and the rules for reading and writing its partitions."""

    root: str
    # Asset key → "<zone>/<table>", derived from the assets' definition metadata (lake_tables).
    tables: dict[str, str] = {}
    # How long a replaced partition version is kept for reads already under way.
    retired_grace_seconds: int = 300
    # A staging directory untouched this long belongs to a writer that died (kill -9, lost
    # node): the next write removes it. No partition write takes anywhere near a day.
    abandoned_staging_seconds: int = 86_400

    @property
    def root_path(self) -> Path:
        return Path(self.root)

    # Paths -------------------------------------------------------------------------------

    def table_dir(self, key: dg.AssetKey, role: str | None = None) -> Path:
        location = self.tables.get(table_id(key, role))
        if location is None:
            raise KeyError(f"{table_id(key, role)} has no lake table (lake_table metadata)")
        return self.root_path / _location(*location.split("/", 1))

    def partition_path(
        self,
        key: dg.AssetKey,
        partitions_def: dg.PartitionsDefinition,
        partition_key: str,
        role: str | None = None,
    ) -> Path:
        return self.table_dir(key, role) / partition_subpath(partitions_def, partition_key)

    # Reading in a step: upstream partitions from Dagster's partition mappings ---------------

    def upstream_keys(
        self,
        context: dg.AssetExecutionContext,
        upstream: dg.AssetKey,
        for_partitions: Sequence[str] | None = None,
    ) -> list[str]:
        """The partitions of `upstream` that the step's partitions (or `for_partitions` of
        them) read, as the asset's declared partition mapping says."""
        if for_partitions is None:
            return list(context.asset_partition_keys_for_input(_input_name(context, upstream)))
        spec = next(
            s for s in context.assets_def.specs if any(d.asset_key == upstream for d in s.deps)
        )
        return upstream_partition_keys(
            declared_mapping(spec, upstream),
            context.assets_def.partitions_def,
            self.upstream_partitions_def(context, upstream),
            for_partitions,
        )

    def input_paths(
        self,
        context: dg.AssetExecutionContext,
        upstream: dg.AssetKey,
        for_partitions: Sequence[str] | None = None,
    ) -> dict[str, Path]:
        """The directories of the upstream partitions the step reads, by partition key; a
        missing one stops the step (no retries) with an error naming the asset, the partition
        and who needs it."""
        partitions_def = self.upstream_partitions_def(context, upstream)
        own = for_partitions or context.partition_keys
        paths = {
            key: self.partition_path(upstream, partitions_def, key)
            for key in self.upstream_keys(context, upstream, for_partitions)
        }
        missing = [key for key, path in paths.items() if not path.is_dir()]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            error = MissingPartitionError(
                f"{_names(context)} {_span(own)} needs {upstream.to_user_string()} partition "
                f"{missing[0]}, which is not in the lake ({paths[missing[0]]}){more}. "
                f"Materialize it first: `{heal_command(missing[0], own[-1])}` rebuilds the "
                "whole chain over those days (recovery_sensor launches that backfill by "
                "itself, with everything it needs)."
            )
            # Waiting will not bring it: fail now, without the step's retries.
            raise dg.Failure(description=str(error), allow_retries=False) from error
        return paths

    def read_spark(
        self,
        context: dg.AssetExecutionContext,
        spark: SparkSession,
        upstream: dg.AssetKey,
    ) -> DataFrame:
        """The upstream partitions the step reads, as one Spark DataFrame with the Hive
        columns (`date`, and `hour` for hourly tables)."""
        paths = self.input_paths(context, upstream).values()
        return spark.read.option("basePath", str(self.table_dir(upstream))).parquet(
            *[str(p) for p in paths]
        )

    def read_pandas(
        self,
        context: dg.AssetExecutionContext,
        upstream: dg.AssetKey,
        for_partitions: Sequence[str] | None = None,
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """The upstream partitions (of the step, or of `for_partitions` of it) with pandas,
        each row tagged with its upstream partition key in a `partition` column."""
        return read_parquet_dirs(self.input_paths(context, upstream, for_partitions), columns)

    # Writing in a step ---------------------------------------------------------------------

    @contextmanager
    def writing(
        self, context: dg.AssetExecutionContext, key: dg.AssetKey, partition_key: str
    ) -> Iterator[Path]:
        """An empty directory to write one partition of `key` into; published on success."""
        target = self.partition_path(key, _own_partitions_def(context, key), partition_key)
        with self.staging(context, key, [partition_key]) as staged:
            yield staged
            self.publish(staged, target)

    def write_spark_daily(
        self,
        context: dg.AssetExecutionContext,
        key: dg.AssetKey,
        frames: Mapping[str | None, DataFrame],
        staging: Path,
    ) -> dict[str | None, dict[str, Path]]:
        """Write Spark DataFrames with a `date` column (the asset's table, and others by role)
        into `staging`, one directory per partition of the step; empty partitions get an
        empty file, so that they replace what was there. Returns the staged directory of each
        (role, partition); publish them with `publish_staged` once they are checked."""
        staged: dict[str | None, dict[str, Path]] = {}
        for role, frame in frames.items():
            base = staging / (role or "table")
            # Every task writes its share of each day: no shuffle funnelling a day's rows
            # through one task (a few files per partition, written in parallel).
            frame.write.options(**NO_SUCCESS_MARKER).mode("overwrite").partitionBy("date").parquet(
                str(base)
            )
            staged[role] = {}
            for partition_key in context.partition_keys:
                directory = base / f"date={partition_key}"
                if not directory.is_dir():
                    frame.drop("date").limit(0).coalesce(1).write.options(
                        **NO_SUCCESS_MARKER
                    ).parquet(str(directory))
                staged[role][partition_key] = directory
            # Hadoop's local checksum files are no part of the lake contract.
            for checksum in base.rglob(".*.crc"):
                checksum.unlink()
        return staged

    def publish_staged(
        self,
        context: dg.AssetExecutionContext,
        key: dg.AssetKey,
        staged: Mapping[str | None, Mapping[str, Path]],
    ) -> None:
        """Publish staged partitions, one atomic swap each."""
        partitions_def = _own_partitions_def(context, key)
        for role, by_partition in staged.items():
            for partition_key, directory in by_partition.items():
                target = self.partition_path(key, partitions_def, partition_key, role)
                self.publish(directory, target)

    # Metadata ------------------------------------------------------------------------------

    def record_partition(
        self,
        context: dg.AssetExecutionContext,
        key: dg.AssetKey,
        partition_key: str,
        extra: Mapping[str, Any] | None = None,
    ) -> int:
        """Attach the standard metadata to one partition's materialization (its rows, counted
        from the Parquet footers, and its path); returns the rows."""
        path = self.partition_path(key, _own_partitions_def(context, key), partition_key)
        rows = count_rows(path)
        context.add_asset_metadata(
            partition_metadata(rows, path, extra), asset_key=key, partition_key=partition_key
        )
        return rows

    def summary(
        self,
        context: dg.AssetExecutionContext,
        key: dg.AssetKey,
        rows_total: int,
        **extra: Any,
    ) -> dict[str, Any]:
        """Run-level metadata: totals, the schemas of the tables the asset writes (their
        columns as the newest partition's files hold them, described) and a preview of the
        newest partition."""
        partitions_def = _own_partitions_def(context, key)
        newest = context.partition_keys[-1]
        schemas = {
            column_schema_key(role): written_schema(
                file_schema(self.partition_path(key, partitions_def, newest, role)),
                column_schema(self.tables[table_id(key, role)]),
            )
            for role in self.roles(key)
        }
        return summary_metadata(
            self.partition_path(key, partitions_def, newest),
            rows_total,
            len(context.partition_keys),
            schemas,
            **extra,
        )

    def roles(self, key: dg.AssetKey) -> list[str | None]:
        """The tables an asset writes: None for its own, then the others by role."""
        prefix = table_id(key) + "#"
        return [None, *(t.removeprefix(prefix) for t in self.tables if t.startswith(prefix))]

    # Storage mechanics ---------------------------------------------------------------------

    @contextmanager
    def staging(
        self,
        context: dg.AssetExecutionContext | None = None,
        key: dg.AssetKey | None = None,
        partition_keys: Sequence[str] | None = None,
    ) -> Iterator[Path]:
        """A fresh directory beside the lake's zones, removed afterwards whatever happens
        (and, should the process die first, by a later write once it is abandoned). In a step
        writing `key` (its partitions, or `partition_keys` of them), a full, read-only or
        forbidden lake fails the step at once, in one line (lake_storage.py)."""
        guard = (
            storage_failures(
                f"{table_id(key)} {_span(partition_keys or context.partition_keys)}",
                self.table_dir(key),
                self.root_path,
            )
            if context is not None and key is not None
            else nullcontext()
        )
        with guard:
            self._sweep_abandoned_staging()
            path = self.root_path / "_staging" / uuid.uuid4().hex
            for attempt in range(10):
                try:
                    path.mkdir(parents=True)
                    break
                except FileNotFoundError:  # another writer removed the empty _staging meanwhile
                    if attempt == 9:
                        raise
            try:
                yield path
            finally:
                shutil.rmtree(path, ignore_errors=True)
                _remove_if_empty(path.parent)

    def publish(self, staged: Path, target: Path) -> None:
        """Swap a fully written directory into place as `target`.

        Publishers of the same table take turns (a file lock), the swap itself is one atomic
        exchange where the kernel offers it (Linux renameat2), so readers always find a whole
        partition, and the replaced version is kept `retired_grace_seconds` for reads that
        were already under way.
        """
        target.parent.mkdir(parents=True, exist_ok=True)
        with self._table_lock(target):
            if not target.exists():
                os.rename(staged, target)
            else:
                # named by its retirement time, for the grace period
                retired = self._trash_dir() / f"{time.time_ns()}-{uuid.uuid4().hex}"
                if _exchange(staged, target):
                    os.rename(staged, retired)  # `staged` now holds the old version
                else:
                    os.rename(target, retired)
                    os.rename(staged, target)
        self._empty_trash()

    def _trash_dir(self) -> Path:
        path = self.root_path / "_trash"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _sweep_abandoned_staging(self) -> None:
        cutoff = time.time() - self.abandoned_staging_seconds
        with suppress(FileNotFoundError):
            for staged in (self.root_path / "_staging").iterdir():
                with suppress(FileNotFoundError):
                    if staged.stat().st_mtime < cutoff:
                        shutil.rmtree(staged, ignore_errors=True)

    def _empty_trash(self) -> None:
        cutoff = time.time_ns() - self.retired_grace_seconds * 1_000_000_000
        for retired in self._trash_dir().iterdir():
            retired_at = retired.name.split("-", 1)[0]
            if retired_at.isdigit() and int(retired_at) <= cutoff:
                shutil.rmtree(retired, ignore_errors=True)

    @contextmanager
    def _table_lock(self, target: Path) -> Iterator[None]:
        zone, table = target.relative_to(self.root_path).parts[:2]
        locks = self.root_path / "_locks"
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / f"{zone}__{table}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def upstream_partitions_def(
        self, context: dg.AssetExecutionContext, upstream: dg.AssetKey
    ) -> dg.PartitionsDefinition:
        return context.op_execution_context.asset_partitions_def_for_input(
            _input_name(context, upstream)
        )


def _input_name(context: dg.AssetExecutionContext, upstream: dg.AssetKey) -> str:
    for name, key in context.assets_def.keys_by_input_name.items():
        if key == upstream:
            return name
    raise KeyError(
        f"{_names(context)} does not declare {upstream.to_user_string()} as a dependency"
    )


def _own_partitions_def(
    context: dg.AssetExecutionContext, key: dg.AssetKey
) -> dg.PartitionsDefinition:
    if key not in context.assets_def.keys:
        raise KeyError(f"{_names(context)} does not write {key.to_user_string()}")
    return context.assets_def.partitions_def


def _names(context: dg.AssetExecutionContext) -> str:
    return ", ".join(sorted(k.to_user_string() for k in context.assets_def.keys))


def _span(keys: Sequence[str]) -> str:
    return keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]}"


def _remove_if_empty(path: Path) -> None:
    with suppress(OSError):
        path.rmdir()
