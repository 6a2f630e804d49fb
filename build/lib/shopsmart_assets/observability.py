"""What every materialization reports: rows, schema, time range and a preview."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq


def table_schema(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name=f.name, type=str(f.type)) for f in schema])


def count_rows(directory: Path) -> int:
    """Rows in the Parquet files under a partition directory, from their footers only."""
    return sum(pq.read_metadata(f).num_rows for f in sorted(directory.rglob("*.parquet")))


def preview(directory: Path, rows: int = 5) -> dg.MetadataValue:
    """The first rows of a partition, as a Markdown table."""
    table = ds.dataset(directory, format="parquet").head(rows)
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
    directory: Path, rows_total: int, partitions: int, **extra: Any
) -> dict[str, Any]:
    """Run-level metadata: the totals, plus the schema and a preview of the newest partition
    as it lies in the lake."""
    return {
        "rows_total": rows_total,
        "partitions": partitions,
        "dagster/column_schema": table_schema(ds.dataset(directory, format="parquet").schema),
        "preview": preview(directory),
        **extra,
    }
