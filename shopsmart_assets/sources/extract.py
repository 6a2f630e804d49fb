"""Extraction from the source databases into raw Parquet: plain functions, no Dagster.

Each query takes its time window as bound parameters, streams in chunks (server-side cursors
where the driver has them) and is coerced to the raw contract chunk by chunk, so a partition of
millions of rows never sits in memory whole.

One value that cannot be read as its column's type (a price stored as 'abc', an integer too
big for 64 bits, the 30th of February) does not stop the extraction: the typed column is null,
the source value is kept as text in `unparsed_values`, and the line is quarantined downstream
with a reason naming the column. Only a systematic change stops it, as schema drift: a column
missing or renamed, or a column that more than half of a partition's rows (and at least
`DRIFT_MIN_ROWS` of them) cannot be read.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from shopsmart_assets.sources.tables import RAW_SCHEMAS, SOURCE_SCHEMAS

DEFAULT_CHUNK_ROWS = 50_000
# A column is drifted, not dirty, when more than this share of a partition's rows cannot be
# read, and at least DRIFT_MIN_ROWS of them (one bad row in a quiet hour is just a bad row).
DRIFT_SHARE = 0.5
DRIFT_MIN_ROWS = 10
_INT64 = (-(2**63), 2**63 - 1)


class SourceSchemaError(ValueError):
    """The source no longer matches the raw contract (docs/sources.md)."""


@dataclass(frozen=True)
class Extraction:
    """One raw table: which source table feeds it and the query for one partition window."""

    raw_table: str
    source: str
    source_table: str
    # The rows of a window, and the order they are read in (chunks land in that order).
    select: str
    order_by: str

    @property
    def sql(self) -> str:
        """The extraction's query for a window: its rows, in order."""
        return f"{self.select} ORDER BY {self.order_by}"

    @property
    def schema(self) -> pa.Schema:
        """What lands in the raw zone: the source columns plus `unparsed_values`."""
        return RAW_SCHEMAS[self.raw_table]

    @property
    def source_schema(self) -> pa.Schema:
        return SOURCE_SCHEMAS[self.raw_table]

    def aggregate_sql(self, expressions: str) -> str:
        """`SELECT <expressions>` over the rows the query returns for a window (the same
        rows; their order counts for nothing, so the database does not sort them)."""
        return f"SELECT {expressions} FROM ({self.select}) AS extracted"

    @property
    def count_sql(self) -> str:
        """The number of rows the query returns for a window (for reconciliation)."""
        return self.aggregate_sql("count(*)")


# Queries bind :start and :end; no value is ever formatted into SQL.
CRM_CUSTOMERS = Extraction(
    raw_table="crm_customers",
    source="crm",
    source_table="customers",
    # A daily snapshot: every customer signed up before the end of the day.
    select="SELECT * FROM customers WHERE signup_at < :end",
    order_by="customer_id",
)
CRM_INTERACTIONS = Extraction(
    raw_table="crm_interactions",
    source="crm",
    source_table="interactions",
    select="SELECT * FROM interactions WHERE occurred_at >= :start AND occurred_at < :end",
    order_by="interaction_id",
)
ORDERS = Extraction(
    raw_table="orders",
    source="orders",
    source_table="orders",
    select="SELECT * FROM orders WHERE ordered_at >= :start AND ordered_at < :end",
    order_by="order_id, updated_at, status",
)
ORDER_ITEMS = Extraction(
    raw_table="order_items",
    source="orders",
    source_table="order_items",
    select=(
        "SELECT i.* FROM order_items i WHERE i.order_id IN ("
        "SELECT o.order_id FROM orders o WHERE o.ordered_at >= :start AND o.ordered_at < :end)"
    ),
    order_by="i.order_id, i.line_no, i.product_id, i.quantity, i.unit_price",
)


def window_params(start: datetime, end: datetime) -> dict[str, datetime]:
    """Bound parameters for a window, as naive UTC (the sources store UTC timestamps)."""

    def naive_utc(value: datetime) -> datetime:
        if value.tzinfo is None:
            return value
        return pd.Timestamp(value).tz_convert("UTC").tz_localize(None).to_pydatetime()

    return {"start": naive_utc(start), "end": naive_utc(end)}


def _bound(sql: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters a query uses (the customer snapshot binds only :end)."""
    return {name: value for name, value in params.items() if f":{name}" in sql}


def _statement(sql: str, params: Mapping[str, Any]) -> sa.TextClause:
    binds = [sa.bindparam(name, type_=sa.DateTime()) for name in params]
    return sa.text(sql).bindparams(*binds)


def aggregate_source_rows(
    connection: sa.Connection, extraction: Extraction, params: Mapping[str, Any], expressions: str
) -> sa.Row:
    """Aggregates (`count(*)`, `max(updated_at)`, …) of the rows the extraction's query
    returns from the source for a window, now."""
    sql = extraction.aggregate_sql(expressions)
    bound = _bound(sql, params)
    return connection.execute(_statement(sql, bound), bound).one()


def count_source_rows(
    connection: sa.Connection, extraction: Extraction, params: Mapping[str, Any]
) -> int:
    """How many rows the extraction's query returns from the source for a window, now."""
    return int(aggregate_source_rows(connection, extraction, params, "count(*)")[0])


@dataclass
class Coerced:
    """A chunk in the raw contract, and which columns held values that did not read."""

    table: pa.Table
    unparsed: Counter[str] = field(default_factory=Counter)


def coerce_to_contract(frame: pd.DataFrame, extraction: Extraction, partition_key: str) -> Coerced:
    """Cast one chunk to the raw contract. A value that does not read as its column's type
    becomes null, with its source text kept in `unparsed_values`; a missing column stops the
    extraction with an error naming source, table, column and partition."""
    missing = [name for name in extraction.source_schema.names if name not in frame.columns]
    if missing:
        raise SourceSchemaError(
            f"{_where(extraction, partition_key)}: column '{missing[0]}' is missing from the "
            f"source (expected columns: {', '.join(extraction.source_schema.names)}; "
            f"found: {', '.join(map(str, frame.columns))})"
        )
    arrays: list[pa.Array] = []
    unparsed_by_row: dict[int, dict[str, str]] = {}
    counts: Counter[str] = Counter()
    for column_field in extraction.source_schema:
        column = frame[column_field.name]
        try:
            arrays.append(_to_arrow(column, column_field.type))
        except (TypeError, ValueError, OverflowError, pa.ArrowException):
            values, failed = _read_each(column, column_field.type)
            arrays.append(pa.array(values, type=column_field.type, from_pandas=True))
            for row, text in failed.items():
                unparsed_by_row.setdefault(row, {})[column_field.name] = text
            counts[column_field.name] += len(failed)
    arrays.append(
        pa.array(
            [
                json.dumps(unparsed_by_row[row]) if row in unparsed_by_row else None
                for row in range(len(frame))
            ],
            type=pa.string(),
        )
    )
    return Coerced(pa.Table.from_arrays(arrays, schema=extraction.schema), counts)


def _where(extraction: Extraction, partition_key: str) -> str:
    return (
        f"source '{extraction.source}', table '{extraction.source_table}', "
        f"partition {partition_key}"
    )


def _to_arrow(column: pd.Series, arrow_type: pa.DataType) -> pa.Array:
    """The whole column at once (the fast path every clean chunk takes)."""
    if pa.types.is_timestamp(arrow_type):
        if column.dtype == object and not all(
            _is_null(v) or isinstance(v, datetime) or (isinstance(v, str) and v.strip())
            for v in column.tolist()
        ):
            raise TypeError("a timestamp column holds values that are neither times nor text")
        values = pd.to_datetime(column, utc=True, errors="raise", format="mixed")
        return pa.array(values, type=arrow_type, from_pandas=True)
    if pa.types.is_integer(arrow_type):
        return pa.array(_numeric(column), from_pandas=True).cast(arrow_type, safe=True)
    if pa.types.is_floating(arrow_type):
        return pa.array(_numeric(column), from_pandas=True).cast(arrow_type)
    return pa.array(column, type=arrow_type, from_pandas=True)


def _numeric(column: pd.Series) -> pd.Series:
    """A column of numbers, or of numbers as text; blank text is not a number (pandas would
    read it as NaN, silently)."""
    if column.dtype != object:
        return column
    if any(isinstance(v, str) and not v.strip() for v in column.tolist()):
        raise ValueError("blank text in a numeric column")
    return pd.to_numeric(column, errors="raise")


def _read_each(column: pd.Series, arrow_type: pa.DataType) -> tuple[list[Any], dict[int, str]]:
    """The column value by value: what reads, and the source text of what does not."""
    values: list[Any] = []
    failed: dict[int, str] = {}
    for row, value in enumerate(column.tolist()):
        try:
            values.append(read_value(value, arrow_type))
        except (TypeError, ValueError, OverflowError, ArithmeticError):
            values.append(None)
            failed[row] = _as_text(value)
    return values, failed


def read_value(value: Any, arrow_type: pa.DataType) -> Any:
    """One source value as the contract's type; raises ValueError when it does not read.
    Nulls stay null; text columns take the text of any scalar."""
    if _is_null(value):
        return None
    if pa.types.is_timestamp(arrow_type):
        if isinstance(value, (bool, int, float, Decimal)):
            raise ValueError(f"a number is not a timestamp: {value!r}")
        stamp = pd.Timestamp(value)
        if stamp is pd.NaT:
            raise ValueError(f"not a timestamp: {value!r}")
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return stamp.to_pydatetime()
    if pa.types.is_integer(arrow_type):
        number = _number(value)
        if isinstance(number, float) and not number.is_integer():
            raise ValueError(f"not a whole number: {value!r}")
        whole = int(number)
        if not _INT64[0] <= whole <= _INT64[1]:
            raise ValueError(f"outside 64-bit integers: {value!r}")
        return whole
    if pa.types.is_floating(arrow_type):
        return float(_number(value))
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, (str, int, float, Decimal, date, datetime)):
        return str(value)
    raise ValueError(f"not text: {value!r}")


def _number(value: Any) -> int | float:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, (float, Decimal)):
        number = float(value)
        if math.isnan(number):
            raise ValueError("NaN")
        return number
    if isinstance(value, (str, bytes)):
        text = value.decode() if isinstance(value, bytes) else value
        try:
            return int(text.strip())
        except ValueError:
            number = float(text.strip())  # raises ValueError for 'abc'
            if math.isnan(number):
                raise ValueError("NaN") from None
            return number
    raise ValueError(f"not a number: {value!r}")


def _is_null(value: Any) -> bool:
    if value is None or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _as_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return str(value)


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
        bound = _bound(extraction.sql, params)
        result = connection.execution_options(yield_per=chunk_rows).execute(
            _statement(extraction.sql, bound), bound
        )
        columns = list(result.keys())
        for rows in result.partitions(chunk_rows):
            yield pd.DataFrame.from_records(rows, columns=columns)


@dataclass
class ExtractReport:
    """What one partition's extraction landed."""

    rows: int = 0
    unparsed: Counter[str] = field(default_factory=Counter)  # values kept as text, by column


def extract_to_parquet(
    engine: sa.Engine,
    extraction: Extraction,
    params: Mapping[str, Any],
    destination: Path,
    partition_key: str,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> ExtractReport:
    """Write one partition's rows to `destination` (a Parquet file).

    An empty window still writes a file with the contract's schema, so the partition exists
    and replaces whatever was there before. A drifted column raises SourceSchemaError after
    the last chunk: the caller publishes nothing.
    """
    report = ExtractReport()
    with pq.ParquetWriter(destination, extraction.schema) as writer:
        for frame in read_chunks(engine, extraction, params, chunk_rows):
            coerced = coerce_to_contract(frame, extraction, partition_key)
            writer.write_table(coerced.table)
            report.rows += coerced.table.num_rows
            report.unparsed.update(coerced.unparsed)
        if report.rows == 0:
            writer.write_table(extraction.schema.empty_table())
    check_drift(report, extraction, partition_key)
    return report


def check_drift(report: ExtractReport, extraction: Extraction, partition_key: str) -> None:
    """Raise SourceSchemaError for a column most of the partition's rows could not read."""
    for column, failures in report.unparsed.most_common():
        if failures >= DRIFT_MIN_ROWS and failures > DRIFT_SHARE * report.rows:
            schema_type = extraction.source_schema.field(column).type
            raise SourceSchemaError(
                f"{_where(extraction, partition_key)}: column '{column}' does not hold "
                f"{schema_type} values in {failures:,} of {report.rows:,} rows (more than "
                f"{DRIFT_SHARE:.0%}): the column was retyped, not a few rows mistyped"
            )
