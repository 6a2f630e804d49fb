"""`shopsmart-lake`: the lake's partition versions.

    shopsmart-lake history TABLE [PARTITION]   a table's versions, current and kept: version
                                               id, when, run, rows, and the registered model
                                               versions that learned from it
    shopsmart-lake gc [--retention-days N]     delete kept versions older than the retention
                                               (SHOPSMART_LAKE_RETENTION_DAYS, 30) that no
                                               registered model version references

TABLE is a lake table (`features/training_set`) or its asset (`ml/training_set`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from shopsmart_assets import settings
from shopsmart_assets.lake.versions import (
    Collected,
    Manifest,
    collect_garbage,
    current_versions,
    kept_versions,
)


@dataclass(frozen=True)
class VersionRow:
    manifest: Manifest
    state: str  # "current" or "kept"
    models: list[int]


def table_location(name: str, tables: dict[str, str]) -> str:
    """A lake table's location from its location or its asset key."""
    if name in tables.values():
        return name
    if name in tables:
        return tables[name]
    known = ", ".join(sorted(set(tables.values())))
    raise SystemExit(f"shopsmart-lake: no lake table {name!r}; tables are {known}")


def history(
    root: Path,
    location: str,
    references: dict[tuple[str, str, str], list[int]],
    partition: str | None = None,
) -> list[VersionRow]:
    """Every version of a table's partitions (or one partition's), newest first per
    partition: the current one and the kept ones."""
    rows = [
        VersionRow(m, "current", references.get((m.table, m.partition, m.version), []))
        for _, m in current_versions(root, location)
    ] + [
        VersionRow(m, "kept", references.get((m.table, m.partition, m.version), []))
        for _, m in kept_versions(root, location)
    ]
    if partition is not None:
        rows = [r for r in rows if partition in (r.manifest.partition, r.manifest.path)]
    return sorted(
        rows,
        key=lambda r: (r.manifest.path, r.state != "current", r.manifest.replaced_at or ""),
        reverse=False,
    )


def print_history(rows: list[VersionRow]) -> None:
    print(
        f"{'partition':18} {'version':22} {'state':8} {'published':26} {'replaced':26} "
        f"{'rows':>9}  run / models"
    )
    for row in rows:
        m = row.manifest
        models = ", ".join(f"v{n}" for n in row.models) or "-"
        print(
            f"{m.partition:18} {m.version:22} {row.state:8} {m.published_at:26} "
            f"{m.replaced_at or '':26} {m.rows if m.rows is not None else '-':>9}  "
            f"{(m.run_id or '-')[:8]} / models {models}"
        )


def print_collected(collected: Collected, retention: timedelta) -> None:
    print(
        f"shopsmart-lake gc: removed {len(collected.removed)} kept versions, freed "
        f"{collected.freed_bytes:,} bytes; kept {len(collected.referenced)} that registered "
        f"model versions learned from and {len(collected.young)} younger than "
        f"{retention.days} days"
    )


def main(argv: list[str] | None = None) -> int:
    from shopsmart_assets.cli.serving import initialized_resource

    parser = argparse.ArgumentParser(
        prog="shopsmart-lake", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    shown = commands.add_parser("history", help="a table's versions, current and kept")
    shown.add_argument("table")
    shown.add_argument("partition", nargs="?")
    gc = commands.add_parser("gc", help="delete unreferenced kept versions past the retention")
    gc.add_argument("--retention-days", type=int, default=None)
    args = parser.parse_args(argv)

    lake = initialized_resource("lake")
    references = initialized_resource("model_registry").references()
    if args.command == "history":
        location = table_location(args.table, lake.tables)
        rows = history(lake.root_path, location, references, args.partition)
        if not rows:
            print(
                f"shopsmart-lake: no versions of {location}"
                + (f" {args.partition}" if args.partition else "")
            )
            return 1
        print_history(rows)
        return 0
    days = settings.lake_retention_days() if args.retention_days is None else args.retention_days
    retention = timedelta(days=days)
    print_collected(collect_garbage(lake.root_path, references, retention), retention)
    return 0


if __name__ == "__main__":
    sys.exit(main())
