"""Lake tables as Delta Lake tables, committed with delta-rs (`deltalake`).

Whoever writes a partition's Parquet files (Spark's `partitionBy()`, pyarrow, pandas) writes
them into a staging directory; `DeltaLakeTable.commit` moves them into the table's directory
under new names (`<date=…[/hour=…]>/part-<uuid>.parquet`) and commits them as one overwrite of
exactly the partitions written: add actions for the new files, remove actions for the files
those partitions held. A reader of the table sees the old version or the new one, never a
mix; the replaced files stay (older versions read them) until `vacuum`.

Concurrent writers are Delta's optimistic concurrency: a commit that loses to another one
(delta-rs refuses it: "a concurrent transaction deleted data this operation read") is
committed again on the table's new version, up to COMMIT_ATTEMPTS times, then fails naming the
table and its partitions. Committing again is safe because a commit replaces whole partitions
with files already written: it depends on nothing the other writer changed.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from deltalake import DeltaTable

# How often a commit is tried against concurrent writers, and the first wait between tries
# (doubling, with jitter).
COMMIT_ATTEMPTS = 8
COMMIT_BACKOFF_SECONDS = 0.2
# Files in a table's directory that no version references (a writer killed between moving its
# files in and committing them) are removed by vacuum once this old, whatever the retention:
# younger ones may belong to a commit under way.
ORPHAN_MIN_AGE_HOURS = 24
# The commit's own record in the Delta log (`history()`): custom metadata under this key.
COMMIT_INFO_KEY = "shopsmart"


class LakeCommitError(RuntimeError):
    """A commit that concurrent writers kept beating, or a table that is not a Delta table."""


def partition_values(subpath: str) -> dict[str, str]:
    """`date=2026-01-02/hour=0100+0000` → {"date": "2026-01-02", "hour": "0100+0000"}."""
    values = {}
    for part in Path(subpath).parts:
        name, sep, value = part.partition("=")
        if not sep or not name or not value:
            raise ValueError(f"not a Hive partition path: {subpath!r}")
        values[name] = value
    return values


def delta_schema(file_schema: pa.Schema, partition_columns: Sequence[str]) -> pa.Schema:
    """The table's schema for files of `file_schema`: timestamps as Delta's TIMESTAMP
    (microseconds, UTC; Delta has no nanoseconds without a reader feature most readers lack),
    then the partition columns as strings."""
    fields = [
        pa.field(f.name, pa.timestamp("us", tz="UTC"), f.nullable)
        if pa.types.is_timestamp(f.type)
        else f
        for f in file_schema
        if f.name not in partition_columns
    ]
    return pa.schema([*fields, *(pa.field(c, pa.string()) for c in partition_columns)])


@dataclass(frozen=True)
class TableState:
    """A version of a table: its number (None: no table yet) and each partition's files,
    relative to the table, by partition subpath."""

    version: int | None
    files: dict[str, list[str]]


def fingerprint(files: Sequence[str]) -> str:
    """A partition's identity in a version: a digest of its files' names. Files are never
    rewritten and never named twice, so it changes exactly when the partition is replaced."""
    return hashlib.sha256("\n".join(sorted(files)).encode()).hexdigest()[:16]


def combined_fingerprint(fingerprints: Mapping[str, str]) -> str:
    """One id for several partitions' fingerprints (a model's training window)."""
    payload = json.dumps(dict(fingerprints), sort_keys=True).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


@dataclass(frozen=True)
class Commit:
    """What a commit wrote: the table version it made (the newest, when hours of several
    dates took one commit each), and each partition's rows and version."""

    version: int
    rows: dict[str, int]
    versions: dict[str, int]


@dataclass(frozen=True)
class DeltaLakeTable:
    """One lake table: a directory holding a Delta table partitioned by `partition_columns`."""

    path: Path
    partition_columns: tuple[str, ...] = ("date",)
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or str(self.path)

    def exists(self) -> bool:
        from deltalake import DeltaTable

        return DeltaTable.is_deltatable(str(self.path))

    def snapshot(self, version: int | None = None):
        """The table at `version` (default: the current one)."""
        from deltalake import DeltaTable

        return DeltaTable(str(self.path), version=version)

    def version(self) -> int | None:
        return self.snapshot().version() if self.exists() else None

    def state(self, version: int | None = None) -> TableState:
        """The table's version (default: the current one) and each partition's files."""
        if not self.exists():
            return TableState(None, {})
        snapshot = self.snapshot(version)
        adds = pa.table(snapshot.get_add_actions(flatten=True))
        found: dict[str, list[str]] = {}
        for path in adds.column("path").to_pylist():
            found.setdefault(str(Path(path).parent), []).append(path)
        files = {subpath: sorted(listed) for subpath, listed in sorted(found.items())}
        return TableState(snapshot.version(), files)

    def files(self, version: int | None = None) -> dict[str, list[str]]:
        """Each partition's files (relative to the table), by `date=…[/hour=…]`."""
        return self.state(version).files

    def history(self, limit: int | None = None) -> list[dict]:
        """The table's commits, newest first (Delta's `history()`), [] without a table."""
        return self.snapshot().history(limit) if self.exists() else []

    def vacuum(
        self, retention_hours: float, keep_versions: Sequence[int] = (), dry_run: bool = False
    ) -> list[str]:
        """Delete the files that no version younger than `retention_hours` references, except
        those of `keep_versions` (versions someone pinned: they stay readable), and files no
        version references at all once ORPHAN_MIN_AGE_HOURS old. Returns the files (deleted,
        or that would be with `dry_run`)."""
        if not self.exists():
            return []
        table = self.snapshot()
        kept = sorted({v for v in keep_versions if v <= table.version()})
        options = {"dry_run": dry_run, "enforce_retention_duration": False}
        removed = table.vacuum(int(retention_hours), keep_versions=kept, **options)
        orphan_hours = int(max(retention_hours, ORPHAN_MIN_AGE_HOURS))
        orphans = table.vacuum(orphan_hours, keep_versions=kept, full=True, **options)
        return sorted({*removed, *orphans})

    def commit(
        self,
        staged: Mapping[str, Sequence[Path]],
        info: Mapping[str, object] | None = None,
    ) -> Commit:
        """Commit staged Parquet files as the partitions they belong to (`staged`: partition
        subpath → its files; a partition with no rows has one file without rows), replacing
        those partitions and nothing else. `info` goes into the commit (its history entry).
        Returns the versions made and each partition's rows."""
        if not staged:
            raise ValueError(f"{self.label}: nothing to commit")
        adds, rows, schema = self._adopt(staged)
        pending = list(adds)
        versions: dict[str, int] = {}
        try:
            for group in self._groups(adds):
                version = self._commit_with_retries(group, schema, dict(info or {}))
                versions |= {str(Path(a.path).parent): version for a in group}
                pending = [a for a in pending if a not in group]
        except BaseException:
            for add in pending:  # nothing references them: leave no orphan behind
                (self.path / add.path).unlink(missing_ok=True)
            raise
        return Commit(max(versions.values()), rows, versions)

    def _adopt(self, staged: Mapping[str, Sequence[Path]]):
        """Move the staged files into the table directory under new names; their add actions,
        each partition's rows, and the table's schema."""
        from deltalake.transaction import AddAction

        adds, rows, schemas = [], {}, []
        for subpath, files in staged.items():
            values = partition_values(subpath)
            if tuple(values) != self.partition_columns:
                raise ValueError(f"{self.label}: {subpath!r} is not a partition of this table")
            (self.path / subpath).mkdir(parents=True, exist_ok=True)
            rows[subpath] = 0
            for file in files:
                metadata = pq.read_metadata(file)
                schemas.append(metadata.schema.to_arrow_schema())
                relative = f"{subpath}/part-{uuid.uuid4().hex}.parquet"
                Path(file).rename(self.path / relative)
                stat = (self.path / relative).stat()
                stats = json.dumps({"numRecords": metadata.num_rows})
                adds.append(
                    AddAction(
                        relative, stat.st_size, values, int(stat.st_mtime * 1000), True, stats
                    )
                )
                rows[subpath] += metadata.num_rows
        schema = delta_schema(pa.unify_schemas(schemas), self.partition_columns)
        return adds, rows, schema

    def _commit_with_retries(self, adds: list, schema: pa.Schema, info: dict) -> int:
        from deltalake.exceptions import CommitFailedError

        # the commit finds its own version in the log by this id (another writer's commit
        # may already be on top of it)
        commit_id = uuid.uuid4().hex
        properties = _commit_properties({**info, "commit_id": commit_id})
        last_error: Exception | None = None
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                return self._version_of(commit_id, self._commit_once(adds, schema, properties))
            except (CommitFailedError, _TableCreatedMeanwhile) as error:
                last_error = error
                time.sleep(COMMIT_BACKOFF_SECONDS * 2**attempt * (0.5 + random.random()))
        subpaths = sorted({str(Path(a.path).parent) for a in adds})
        raise LakeCommitError(
            f"{self.label}: the commit of {_span(subpaths)} lost to concurrent writers "
            f"{COMMIT_ATTEMPTS} times (last: {str(last_error).splitlines()[0]}); the table is "
            "as the other writers left it: run the step again"
        ) from last_error

    def _version_of(self, commit_id: str, table: DeltaTable | None = None) -> int:
        """The version of the commit recorded with `commit_id`, looked up in `table` (the
        snapshot the commit was made on, brought up to date) or in the current version."""
        if table is None:
            table = self.snapshot()
        else:
            table.update_incremental()
        for limit in (16, None):
            for entry in table.history(limit):
                if commit_info(entry).get("commit_id") == commit_id:
                    return int(entry["version"])
        raise LakeCommitError(f"{self.label}: commit {commit_id} is not in the table's log")

    def _commit_once(self, adds: list, schema: pa.Schema, properties) -> DeltaTable | None:
        """One try: a new table made of `adds`, or one overwrite of their partitions (then
        the snapshot it was made on is returned)."""
        from deltalake.transaction import create_table_with_add_actions

        if not self.exists():
            try:
                create_table_with_add_actions(
                    str(self.path),
                    _arrow_to_delta(schema),
                    adds,
                    mode="error",
                    partition_by=list(self.partition_columns),
                    commit_properties=properties,
                )
            except Exception as error:
                if self.exists():  # another writer made the table first: overwrite in it
                    raise _TableCreatedMeanwhile(str(error)) from error
                raise
            return None
        snapshot = self.snapshot()
        snapshot.create_write_transaction(
            adds,
            mode="overwrite",
            schema=schema,
            partition_by=list(self.partition_columns),
            partition_filters=self._filter(adds),
            commit_properties=properties,
        )
        return snapshot

    def commit_groups(self, subpaths: Iterable[str]) -> list[list[str]]:
        """The commits that replace exactly these partitions (subpaths): one for a table
        partitioned by date; for date and hour, one per date (a Delta partition filter is a
        conjunction: hours of one date are exact, hours of several dates are not)."""
        by_date: dict[str, list[str]] = {}
        for subpath in subpaths:
            first = subpath.split("/", 1)[0] if len(self.partition_columns) > 1 else ""
            by_date.setdefault(first, []).append(subpath)
        return [by_date[d] for d in sorted(by_date)]

    def _groups(self, adds: list) -> list[list]:
        """`adds` in the commits of `commit_groups`."""
        by_subpath: dict[str, list] = {}
        for add in adds:
            by_subpath.setdefault(str(Path(add.path).parent), []).append(add)
        return [
            [a for s in group for a in by_subpath[s]] for group in self.commit_groups(by_subpath)
        ]

    def _filter(self, adds: list) -> list[tuple]:
        """The partition filter of one group's partitions."""
        first, *rest = self.partition_columns
        values = [a.partition_values for a in adds]
        if not rest:
            return [(first, "in", sorted({v[first] for v in values}))]
        [date] = {v[first] for v in values}
        return [(first, "=", date), (rest[0], "in", sorted({v[rest[0]] for v in values}))]


class _TableCreatedMeanwhile(Exception):
    pass


def _arrow_to_delta(schema: pa.Schema):
    from deltalake import Schema

    return Schema.from_arrow(schema)


def _commit_properties(info: dict):
    from deltalake import CommitProperties

    metadata = {COMMIT_INFO_KEY: json.dumps(info, sort_keys=True, default=str)} if info else None
    return CommitProperties(custom_metadata=metadata)


def arrow_dataset(path: Path | str, version: int | None = None) -> ds.Dataset:
    """A version of the Delta table at `path` (default: the current one) as a pyarrow
    dataset: the Parquet files its log lists, the partition columns read from their paths,
    every column typed as the table's schema says. (delta-rs' own `to_pyarrow_dataset` reads
    through its file system handler, whose threads abort the process at exit in about half
    the runs of a short script: measured with deltalake 1.6.6.)"""
    from deltalake import DeltaTable

    table = DeltaTable(str(path), version=version)
    schema = pa.schema(table.schema().to_arrow())
    hive = pa.schema([schema.field(c) for c in table.metadata().partition_columns])
    return ds.dataset(
        table.file_uris(),
        schema=schema,
        format="parquet",
        partitioning=ds.partitioning(hive, flavor="hive"),
        partition_base_dir=str(path),
    )


def duckdb_view(connection, path: Path, name: str, version: int | None = None) -> None:
    """A version of the Delta table at `path` (default: the current one) as the DuckDB view
    `name` (`arrow_dataset`). (Where DuckDB's delta extension can be installed,
    `delta_scan('path')` reads the current version by itself.)"""
    connection.register(name, arrow_dataset(path, version))


def commit_info(entry: Mapping[str, object]) -> dict:
    """The platform's record in one `history()` entry ({} for commits of other writers)."""
    raw = entry.get(COMMIT_INFO_KEY)
    return json.loads(raw) if isinstance(raw, str) else {}


def _span(subpaths: Sequence[str]) -> str:
    ordered = sorted(subpaths)
    return ordered[0] if len(ordered) == 1 else f"{ordered[0]}..{ordered[-1]}"
