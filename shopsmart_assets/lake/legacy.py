"""Lakes written by the release before Delta tables: partition directories of plain Parquet,
replaced versions in `_versions/`, file locks in `_locks/`, retired directories in
`_retired/`. The platform refuses to read or write one (it would read the Parquet files as a
table and miss the versions), and `shopsmart-lake convert` makes it a lake of Delta tables:
each table's current partitions become its version 0 (delta-rs' `convert_to_deltalake`, the
files left where they are); the old version store goes. The models trained on kept versions
can no longer be rebuilt exactly (their versions were in the store)."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

LEGACY_DIRS = ("_versions", "_locks", "_retired")


class LegacyLakeError(RuntimeError):
    """The lake was written by the release before Delta tables."""


def legacy_marks(root: Path) -> list[str]:
    """What marks `root` as a lake of the release before Delta tables ([] if nothing)."""
    return [name for name in LEGACY_DIRS if (root / name).exists()]


def refuse_legacy(root: Path) -> None:
    """Fail, saying how to go on, on a lake of the release before Delta tables."""
    marks = legacy_marks(root)
    if marks:
        raise LegacyLakeError(
            f"the lake at {root} was written by the release before Delta tables (it holds "
            f"{', '.join(marks)}): convert it with `shopsmart-lake convert` (its current "
            "partitions become version 0 of each table), or start afresh with `make clean`"
        )


def convert_legacy_lake(root: Path, tables: Mapping[str, Sequence[str]]) -> list[str]:
    """Make each table (`<zone>/<table>` → its partition columns) that holds Parquet
    partitions but no Delta log a Delta table of its current files, then remove the old
    version store; returns the tables converted."""
    import pyarrow as pa
    from deltalake import Schema, convert_to_deltalake

    converted = []
    for location, columns in sorted(tables.items()):
        table = root / location
        if (table / "_delta_log").is_dir() or not any(table.glob("*=*/**/*.parquet")):
            continue
        schema = pa.schema([(column, pa.string()) for column in columns])
        convert_to_deltalake(
            str(table), partition_by=Schema.from_arrow(schema), partition_strategy="hive"
        )
        converted.append(location)
    for name in LEGACY_DIRS:
        shutil.rmtree(root / name, ignore_errors=True)
    return converted
