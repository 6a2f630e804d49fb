"""The lake's tables over time: their history (Delta's, with what the platform recorded in
each commit) and vacuum, which deletes the files no version needs any more except those of
the versions registered models learned from (`shopsmart-lake`, the nightly `lake_gc_job`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from shopsmart_assets.lake.delta import DeltaLakeTable, commit_info


@dataclass(frozen=True)
class HistoryRow:
    """One commit of a table: its version, when, what, by which run, which partitions, and
    the registered model versions that learned from that version."""

    version: int
    when: str
    operation: str
    run_id: str | None
    partitions: list[str]
    models: list[int]


def table_history(
    table: DeltaLakeTable, pinned: Mapping[int, list[int]], partition: str | None = None
) -> list[HistoryRow]:
    """A table's commits, newest first (only those that wrote `partition`, when given)."""
    rows = []
    for entry in table.history():
        info = commit_info(entry)
        partitions = [str(p) for p in info.get("partitions", [])]
        if partition is not None and partition not in partitions:
            continue
        when = datetime.fromtimestamp(int(entry["timestamp"]) / 1000, timezone.utc)
        version = int(entry["version"])
        rows.append(
            HistoryRow(
                version,
                when.isoformat(timespec="seconds"),
                str(entry.get("operation", "")),
                info.get("run_id"),
                partitions,
                list(pinned.get(version, [])),
            )
        )
    return rows


@dataclass(frozen=True)
class Vacuumed:
    """What vacuum removed from one table, and the versions it kept readable."""

    table: str
    removed: list[str]
    freed_bytes: int
    kept_versions: list[int]


def vacuum_tables(
    root: Path,
    tables: Iterable[str],
    pinned: Mapping[str, Iterable[int]],
    retention: timedelta,
    dry_run: bool = False,
) -> list[Vacuumed]:
    """Vacuum each table (`<zone>/<table>` under `root`) with the retention, keeping the files
    of its `pinned` versions."""
    done = []
    for location in tables:
        table = DeltaLakeTable(root / location, name=location)
        if not table.exists():
            continue
        keep = sorted(set(pinned.get(location, ())))
        planned = table.vacuum(retention.total_seconds() / 3600, keep, dry_run=True)
        freed = sum(_size(table.path / f) for f in planned)
        removed = planned if dry_run else table.vacuum(retention.total_seconds() / 3600, keep)
        done.append(Vacuumed(location, removed, freed, keep))
    return done


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
