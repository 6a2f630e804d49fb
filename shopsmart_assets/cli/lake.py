"""`shopsmart-lake`: the lake's Delta tables over time.

    shopsmart-lake history TABLE [PARTITION]   a table's commits, newest first: version, when,
                                               operation, run, partitions written, and the
                                               registered model versions that learned from it
    shopsmart-lake gc [--retention-days N]     vacuum every table: delete the files no
                                               version younger than the retention
                                               (SHOPSMART_LAKE_RETENTION_DAYS, 30) needs,
                                               except those of versions registered model
                                               versions learned from

    shopsmart-lake lineage ASSET PARTITION     what the partition (as the table holds it now)
                                               was built from, down to the raw hours and
                                               their sources' rows
    shopsmart-lake convert                     make a lake written by the release before
                                               Delta tables a lake of Delta tables (each
                                               table's current partitions: its version 0)

TABLE is a lake table (`features/training_set`) or its asset (`ml/training_set`).
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from typing import TYPE_CHECKING

from shopsmart_assets import settings
from shopsmart_assets.lake.delta import DeltaLakeTable
from shopsmart_assets.lake.legacy import convert_legacy_lake, legacy_marks
from shopsmart_assets.lake.maintenance import HistoryRow, Vacuumed, table_history, vacuum_tables
from shopsmart_assets.lake.paths import partition_columns, table_partition_columns
from shopsmart_assets.lake.provenance import Lineage, LineageNode, lineage_lines

if TYPE_CHECKING:
    from shopsmart_assets.definitions import CodeLocation
    from shopsmart_assets.lake import LakeResource


def table_location(name: str, tables: dict[str, str]) -> str:
    """A lake table's location from its location or its asset key."""
    if name in tables.values():
        return name
    if name in tables:
        return tables[name]
    known = ", ".join(sorted(set(tables.values())))
    raise SystemExit(f"shopsmart-lake: no lake table {name!r}; tables are {known}")


def print_history(rows: list[HistoryRow]) -> None:
    print(f"{'version':>7}  {'when':25} {'operation':12} {'run':8}  partitions / models")
    for row in rows:
        partitions = _span(row.partitions)
        models = ", ".join(f"v{n}" for n in row.models)
        pinned = f"  (pinned by models {models})" if models else ""
        print(
            f"{row.version:>7}  {row.when:25} {row.operation:12} {(row.run_id or '-')[:8]:8}  "
            f"{partitions}{pinned}"
        )


def _span(partitions: list[str]) -> str:
    if not partitions:
        return "-"
    ordered = sorted(partitions)
    return ordered[0] if len(ordered) == 1 else f"{ordered[0]}..{ordered[-1]} ({len(ordered)})"


def print_vacuumed(vacuumed: list[Vacuumed], retention: timedelta) -> None:
    removed = sum(len(v.removed) for v in vacuumed)
    freed = sum(v.freed_bytes for v in vacuumed)
    kept = "; ".join(
        f"{v.table} versions {', '.join(map(str, v.kept_versions))}"
        for v in vacuumed
        if v.kept_versions
    )
    print(
        f"shopsmart-lake gc: removed {removed} files ({freed:,} bytes) from {len(vacuumed)} "
        f"tables, retention {retention.days} days; kept the versions registered models "
        f"learned from: {kept or 'none'}"
    )


def lineage_walker(lake: LakeResource, location: CodeLocation) -> Lineage:
    """Provenance walks over the lake's tables, each partition's inputs from the declared
    partition mappings of the code location."""
    graph = location.graph
    own = {loc: key for key in graph.keys if (loc := lake.tables.get(key.to_user_string()))}
    tables = {
        loc: DeltaLakeTable(lake.root_path / loc, partition_columns(graph.partitions_def(key)), loc)
        for loc, key in own.items()
        if graph.specs[key].partitions_def is not None
    }

    def upstream(table: str, partition: str) -> dict[str, list[str]]:
        key = own[table]
        return {
            lake.location(dep.asset_key): graph.upstream_partitions(key, dep.asset_key, [partition])
            for dep in graph.specs[key].deps
            if dep.asset_key.to_user_string() in lake.tables and dep.asset_key in graph.specs
        }

    return Lineage(tables, upstream)


def print_lineage(node: LineageNode) -> int:
    for line in lineage_lines(node):
        print(line)
    return 0 if node.commit is not None else 2


def convert() -> int:
    from shopsmart_assets.definitions import load_code_location

    root = settings.lake_dir()
    if not legacy_marks(root):
        print(f"shopsmart-lake: {root} is not a lake of the release before Delta tables")
        return 0
    tables = table_partition_columns(load_code_location().assets)
    converted = convert_legacy_lake(root, tables)
    print(
        f"shopsmart-lake convert: {len(converted)} tables of {root} are Delta tables now "
        f"({', '.join(converted) or 'none'}); the old version store is gone"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    from shopsmart_assets.cli.serving import initialized_resource

    parser = argparse.ArgumentParser(
        prog="shopsmart-lake", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    shown = commands.add_parser("history", help="a table's commits, newest first")
    shown.add_argument("table")
    shown.add_argument("partition", nargs="?")
    gc = commands.add_parser("gc", help="vacuum every table, keeping pinned versions")
    gc.add_argument("--retention-days", type=int, default=None)
    commands.add_parser("convert", help="a lake of the release before Delta tables, converted")
    traced = commands.add_parser("lineage", help="what a partition was built from")
    traced.add_argument("table")
    traced.add_argument("partition")
    args = parser.parse_args(argv)
    if args.command == "convert":
        return convert()
    if args.command == "lineage":
        from shopsmart_assets.definitions import load_code_location

        lake = initialized_resource("lake")
        location = table_location(args.table, lake.tables)
        walker = lineage_walker(lake, load_code_location())
        return print_lineage(walker.of(location, args.partition))

    lake = initialized_resource("lake")
    pinned = initialized_resource("model_registry").pinned_versions()
    if args.command == "history":
        location = table_location(args.table, lake.tables)
        table = DeltaLakeTable(lake.root_path / location, name=location)
        rows = table_history(table, pinned.get(location, {}), args.partition)
        if not rows:
            print(
                f"shopsmart-lake: no commits of {location}"
                + (f" {args.partition}" if args.partition else "")
            )
            return 1
        print_history(rows)
        return 0
    days = settings.lake_retention_days() if args.retention_days is None else args.retention_days
    retention = timedelta(days=days)
    tables = sorted(set(lake.tables.values()))
    print_vacuumed(vacuum_tables(lake.root_path, tables, pinned, retention), retention)
    return 0


if __name__ == "__main__":
    sys.exit(main())
