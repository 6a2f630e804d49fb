"""Extraction from the source databases into raw Parquet: plain functions, no Dagster.

Each query takes its time window as bound parameters, streams in chunks (server-side cursors
where the driver has them) and is coerced to the raw contract chunk by chunk, so a partition of
millions of rows never sits in memory whole.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from shopsmart_assets.source_tables import RAW_SCHEMAS

DEFAULT_CHUNK_ROWS = 50_000


class SourceSchemaError(ValueError):
    """The source no longer matches the raw contract (docs/sources.md)."""


@dataclass(frozen=True)
class Extraction:
    """One raw table: which source table feeds it and the query for one partition window."""

    raw_table: str
    source: str
    source_table: str
    sql: str

    @property
    def schema(self) -> pa.Schema:
        return RAW_SCHEMAS[self.raw_table]


# Queries bind :start and :end; no value is ever formatted into SQL.
CRM_CUSTOMERS = Extraction(
    raw_table="crm_customers",
    source="crm",
    source_table="customers",
    # A daily snapshot: every customer signed up before the end of the day.
    sql="SELECT * FROM customers WHERE signup_at < :end ORDER BY customer_id",
)
CRM_INTERACTIONS = Extraction(
    raw_table="crm_interactions",
    source="crm",
    source_table="interactions",
    sql=(
        "SELECT * FROM interactions WHERE occurred_at >= :start AND occurred_at < :end"
        " ORDER BY interaction_id"
    ),
)
ORDERS = Extraction(
    raw_table="orders",
    source="orders",
    source_table="orders",
    sql=(
        "SELECT * FROM orders WHERE ordered_at >= :start AND ordered_at < :end"
        " ORDER BY order_id, updated_at, status"
    ),
)
ORDER_ITEMS = Extraction(
    raw_table="order_items",
    source="orders",
    source_table="order_items",
    sql=(
        "SELECT i.* FROM order_items i WHERE i.order_id IN ("
        "SELECT o.order_id FROM orders o WHERE o.ordered_at >= :start AND o.ordered_at < :end)"
        " ORDER BY i.order_id, i.line_no, i.product_id, i.quantity, i.unit_price"
    ),
)


def window_params(start: datetime, end: datetime) -> dict[str, datetime]:
    """Bound parameters for a window, as naive UTC (the sources store UTC timestamps)."""

    def naive_utc(value: datetime) -> datetime:
        if value.tzinfo is None:
            return value
        return pd.Timestamp(value).tz_convert("UTC").tz_localize(None).to_pydatetime()

    return {"start": naive_utc(start), "end": naive_utc(end)}


def _bound(extraction: Extraction, params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters this query uses (the customer snapshot binds only :end)."""
    return {name: value for name, value in params.items() if f":{name}" in extraction.sql}


def _statement(extraction: Extraction, params: Mapping[str, Any]) -> sa.TextClause:
    binds = [sa.bindparam(name, type_=sa.DateTime()) for name in params]
    return sa.text(extraction.sql).bindparams(*binds)


def coerce_to_contract(frame: pd.DataFrame, extraction: Extraction, partition_key: str) -> pa.Table:
    """Cast one chunk to the raw contract, or fail naming source, table, column and partition."""
    where = (
        f"source '{extraction.source}', table '{extraction.source_table}', "
        f"partition {partition_key}"
    )
    missing = [name for name in extraction.schema.names if name not in frame.columns]
    if missing:
        raise SourceSchemaError(
            f"{where}: column '{missing[0]}' is missing from the source "
            f"(expected columns: {', '.join(extraction.schema.names)}; "
            f"found: {', '.join(map(str, frame.columns))})"
        )
    arrays = []
    for field in extraction.schema:
        column = frame[field.name]
        try:
            arrays.append(_to_arrow(column, field.type))
        except (TypeError, ValueError, pa.ArrowException) as error:
            raise SourceSchemaError(
                f"{where}: column '{field.name}' does not hold {field.type} values "
                f"({type(error).__name__}: {str(error).splitlines()[0]})"
            ) from error
    return pa.Table.from_arrays(arrays, schema=extraction.schema)


def _to_arrow(column: pd.Series, arrow_type: pa.DataType) -> pa.Array:
    if pa.types.is_timestamp(arrow_type):
        values = pd.to_datetime(column, utc=True, errors="raise", format="mixed")
        return pa.array(values, type=arrow_type, from_pandas=True)
    if pa.types.is_integer(arrow_type):
        if column.dtype == object:
            column = pd.to_numeric(column, errors="raise")
        return pa.array(column, from_pandas=True).cast(arrow_type, safe=True)
    if pa.types.is_floating(arrow_type):
        if column.dtype == object:
            column = pd.to_numeric(column, errors="raise")
        return pa.array(column, from_pandas=True).cast(arrow_type)
    return pa.array(column, type=arrow_type, from_pandas=True)


def read_chunks(
    engine: sa.Engine,
    extraction: Extraction,
    params: Mapping[str, Any],
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Iterator[pd.DataFrame]:
    """Stream the query's rows in DataFrames of at most `chunk_rows` rows.

    `yield_per` turns on `stream_results`: on PostgreSQL (psycopg) the query runs in a
    server-side cursor and rows cross the wire `chunk_rows` at a time; SQLite steps its cursor.
    """
    with engine.connect() as connection:
        bound = _bound(extraction, params)
        result = connection.execution_options(yield_per=chunk_rows).execute(
            _statement(extraction, bound), bound
        )
        columns = list(result.keys())
        for rows in result.partitions(chunk_rows):
            yield pd.DataFrame.from_records(rows, columns=columns)


def extract_to_parquet(
    engine: sa.Engine,
    extraction: Extraction,
    params: Mapping[str, Any],
    destination: Path,
    partition_key: str,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> int:
    """Write one partition's rows to `destination` (a Parquet file); returns the row count.

    An empty window still writes a file with the contract's schema, so the partition exists
    and replaces whatever was there before.
    """
    rows = 0
    with pq.ParquetWriter(destination, extraction.schema) as writer:
        for frame in read_chunks(engine, extraction, params, chunk_rows):
            table = coerce_to_contract(frame, extraction, partition_key)
            writer.write_table(table)
            rows += table.num_rows
        if rows == 0:
            writer.write_table(extraction.schema.empty_table())
    return rows
