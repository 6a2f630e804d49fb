"""What every materialization reports: rows, schema (with the columns' descriptions that the
asset's definition carries, defs/column_catalog.py), time range and a preview."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import dagster as dg
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

# Hive partition columns: in the path (`date=…/hour=…`), not in the files.
PARTITION_COLUMNS = frozenset({"date", "hour"})


def column_schema_key(role: str | None = None) -> str:
    """The metadata key of a table's column schema: `dagster/column_schema` (the UI's Columns)
    for an asset's own table, `<role>_column_schema` for another table it writes."""
    return "dagster/column_schema" if role is None else f"{role}_column_schema"


def written_schema(schema: pa.Schema, documented: dg.TableSchema | None) -> dg.TableSchema:
    """The columns a partition's files really hold (their types as written), each with its
    documented description, then the documented Hive partition columns."""
    descriptions = {c.name: c.description for c in documented.columns} if documented else {}
    in_path = [c for c in (documented.columns if documented else []) if c.name in PARTITION_COLUMNS]
    return dg.TableSchema(
        columns=[dg.TableColumn(f.name, str(f.type), descriptions.get(f.name)) for f in schema]
        + [c for c in in_path if c.name not in schema.names]
    )


# A partition's data: the files a version of a lake table lists for it, or a directory of
# Parquet files staged for a commit (its files are the partition's).
PartitionData: TypeAlias = Path | Sequence[Path]


def parquet_files(data: PartitionData) -> list[Path]:
    """The Parquet files of a partition: the listed ones, or those in a staged directory.
    (A lake table's directory also holds the files of older versions: the table's version
    lists which files are the partition's, lake/delta.py.)"""
    if isinstance(data, Path):
        return sorted(data.glob("*.parquet"))
    return [Path(f) for f in data]


def dataset(data: PartitionData) -> ds.Dataset:
    """A partition's files as one pyarrow dataset (without the partition's columns)."""
    return ds.dataset([str(f) for f in parquet_files(data)], format="parquet")


def file_schema(data: PartitionData) -> pa.Schema:
    """The columns of a partition's Parquet files, as written."""
    return dataset(data).schema


def count_rows(data: PartitionData) -> int:
    """Rows in a partition's Parquet files, from their footers only."""
    return sum(pq.read_metadata(f).num_rows for f in parquet_files(data))


def value_counts(data: PartitionData, column: str) -> dict[str, int]:
    """How often each value of a column occurs in a partition's Parquet files (nulls left
    out), read with pyarrow: a small table's tally needs no Spark job."""
    values = dataset(data).to_table(columns=[column]).column(column)
    counts = values.value_counts()
    return {
        str(value): int(count)
        for value, count in zip(
            counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True
        )
        if value is not None
    }


def fraction(part: int, whole: int) -> float:
    """`part` as a fraction of `whole`, 0.0 of nothing: a number on every partition, for
    plots over partitions."""
    return part / whole if whole else 0.0


def preview(data: PartitionData, rows: int = 5) -> dg.MetadataValue:
    """The first rows of a partition, as a Markdown table."""
    table = dataset(data).head(rows)
    header = "| " + " | ".join(table.column_names) + " |"
    rule = "|" + "---|" * table.num_columns
    body = [
        "| " + " | ".join("" if v is None else str(v) for v in row.values()) + " |"
        for row in table.to_pylist()
    ]
    return dg.MetadataValue.md("\n".join([header, rule, *body]))


def partition_metadata(
    rows: int, path: Path, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "dagster/row_count": rows,
        "lake_path": dg.MetadataValue.path(str(path)),
        **(extra or {}),
    }


def summary_metadata(
    newest: PartitionData,
    rows_total: int,
    partitions: int,
    schemas: Mapping[str, dg.TableSchema],
    **extra: Any,
) -> dict[str, Any]:
    """Run-level metadata: the schemas (by metadata key), a preview of the newest partition as
    it lies in the lake, and the run's totals. Dagster attaches it to every partition the run
    materializes, so the totals are one JSON entry (`run_totals`), not numbers: a plot over
    partitions shows each partition's own figures, never a range's sum."""
    numbers = {k: v for k, v in extra.items() if isinstance(v, int | float)}
    return {
        "run_totals": dg.MetadataValue.json(
            {"partitions": partitions, "rows": rows_total, **numbers}
        ),
        **schemas,
        "preview": preview(newest),
        **{k: v for k, v in extra.items() if k not in numbers},
    }
