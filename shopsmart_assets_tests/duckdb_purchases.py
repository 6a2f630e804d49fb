"""lake/purchases again, in DuckDB: an independent baseline and cross-check of the Spark step.

The rules of docs/lake.md (Purchases and quarantine) written as one DuckDB query over the raw
Parquet partitions of a day, from the contract rather than from the Spark code: the latest
version of each order, one copy of each line, every line either a purchase or quarantined with
the first rule it breaks, amounts in exact decimal arithmetic. `compare_with_lake` checks that
Spark's curated/quarantine partitions hold exactly the same rows. Spark stays the transform
engine; this lives with the tests (like reconcile.py) and the code location never imports it.

Only reference data and documented constants come from the package: the columns and their
types (columns.py, the page's tables), the raw schemas (source_tables.py), the book rates
(transforms/currency.py) and the bounds the page quotes.

Where the Spark step decides something the page leaves open, this follows the code (the
cross-check is about equality): a price is taken as the decimal its double prints as and
rounded half up to the cent before it is multiplied (decimal(14,2)); an order's unreadable
values are checked after `duplicate` and `missing_order`; among copies of a line (same
`order_id` and `line_no`, nulls included) the first by product_id, quantity, unit_price (nulls
first, NaN last) is the line; among versions of an order with the same `updated_at` the
first by status.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from shopsmart_assets.defs.column_catalog import TABLES
from shopsmart_assets.sources.tables import SOURCE_SCHEMAS, UNPARSED
from shopsmart_assets.transforms.currency import USD_PER_UNIT
from shopsmart_assets.transforms.purchases import MAX_AMOUNT_USD, MAX_QUANTITY, MAX_UNIT_PRICE

CURATED, QUARANTINE = "curated/purchases", "quarantine/purchases"
ITEM_COLUMNS = tuple(SOURCE_SCHEMAS["order_items"].names)
ORDER_COLUMNS = tuple(SOURCE_SCHEMAS["orders"].names)
KEY = ("order_id", "line_no")
# How many differing rows compare_with_lake describes (it counts them all).
SHOWN = 10

_ARROW_TYPES = {"date": pa.date32()}


def documented_schema(table: str) -> pa.Schema:
    """The columns of `curated/purchases` or `quarantine/purchases` as docs/lake.md gives them
    (columns.py), Hive `date` included, as an Arrow schema."""
    return pa.schema(
        (c.name, _ARROW_TYPES.get(c.type) or pa.type_for_alias(c.type))
        for c in TABLES[table].columns
    )


def _first_unparseable(column: str, names: Sequence[str]) -> str:
    """SQL: `unparseable_<name>` for the first of `names` the JSON object in `column` has as a
    key (the source value that did not read), else NULL. Not JSON, or not an object: NULL."""
    found = " ".join(
        f"""WHEN json_exists({column}, '$."{n}"') THEN 'unparseable_{n}'""" for n in names
    )
    return (
        f"CASE WHEN {column} IS NOT NULL AND json_valid({column}) "
        f"AND json_type({column}) = 'OBJECT' THEN CASE {found} END END"
    )


def _decimal(column: str, precision: int, scale: int) -> str:
    """SQL: a double as the decimal it prints as, rounded half up to `scale` places."""
    return f"CAST(CAST({column} AS VARCHAR) AS DECIMAL({precision}, {scale}))"


_RATES = ", ".join(f"('{c}', CAST('{r!r}' AS DOUBLE))" for c, r in USD_PER_UNIT.items())

# $orders, $items, $customers: lists of Parquet files; $day: the partition's date.
PURCHASES_SQL = f"""
WITH
items AS MATERIALIZED (
  SELECT {", ".join(ITEM_COLUMNS)}, {UNPARSED}
  FROM read_parquet($items, hive_partitioning = false)),
orders AS (
  SELECT {", ".join(ORDER_COLUMNS)}, {UNPARSED}
  FROM read_parquet($orders, hive_partitioning = false)),
known AS (
  SELECT customer_id FROM read_parquet($customers, hive_partitioning = false)
  WHERE customer_id IS NOT NULL),
rates(currency, usd_per_unit) AS (VALUES {_RATES}),
-- The latest version of each order: latest updated_at first (none last), then by status; and
-- whether the day's CRM snapshot knows its customer.
latest AS (
  SELECT *, coalesce(customer_id IN (SELECT customer_id FROM known), false) AS known_customer
  FROM orders WHERE order_id IS NOT NULL
  QUALIFY row_number() OVER (
    PARTITION BY order_id ORDER BY updated_at DESC NULLS LAST, status ASC NULLS FIRST) = 1),
-- Copies of a line share order_id and line_no (a null is a key like any other): the first by
-- product, quantity and price (nulls first, NaN last) is the line, the others are copies.
-- Numbered only where a key repeats: a window over every line of a day costs seconds.
repeated AS (
  SELECT order_id, line_no FROM items GROUP BY ALL HAVING count(*) > 1),
numbered AS (
  SELECT i.*, 1 AS copy FROM items i
  ANTI JOIN repeated r
    ON r.order_id IS NOT DISTINCT FROM i.order_id AND r.line_no IS NOT DISTINCT FROM i.line_no
  UNION ALL
  SELECT i.*, row_number() OVER (
      PARTITION BY i.order_id, i.line_no
      ORDER BY i.product_id ASC NULLS FIRST, i.quantity ASC NULLS FIRST,
               i.unit_price ASC NULLS FIRST) AS copy
  FROM items i
  SEMI JOIN repeated r
    ON r.order_id IS NOT DISTINCT FROM i.order_id AND r.line_no IS NOT DISTINCT FROM i.line_no),
lines AS (
  SELECT
    i.order_id, i.line_no, o.customer_id, i.product_id, o.ordered_at, o.status, o.channel,
    o.currency, i.quantity, i.unit_price, r.usd_per_unit, o.updated_at, i.copy,
    o.order_id IS NOT NULL AS has_order, o.known_customer,
    {_first_unparseable(f"i.{UNPARSED}", ITEM_COLUMNS)} AS item_unparseable,
    {_first_unparseable(f"o.{UNPARSED}", ORDER_COLUMNS)} AS order_unparseable,
    coalesce(i.{UNPARSED}, o.{UNPARSED}) AS {UNPARSED}
  FROM numbered i
  LEFT JOIN latest o ON o.order_id = i.order_id
  LEFT JOIN rates r ON r.currency = o.currency),
priced AS (
  SELECT *,
    -- exact decimals, only for factors within bounds (so it can neither overflow nor fail)
    CASE WHEN quantity > 0 AND quantity <= {MAX_QUANTITY}
              AND unit_price > 0 AND NOT isnan(unit_price) AND unit_price <= {MAX_UNIT_PRICE!r}
              AND usd_per_unit IS NOT NULL
         THEN CAST(quantity AS DECIMAL(38, 0)) * {_decimal("unit_price", 38, 2)}
              * {_decimal("usd_per_unit", 38, 6)}
    END AS amount
  FROM lines),
checked AS (
  SELECT *,
    CASE
      WHEN item_unparseable IS NOT NULL THEN item_unparseable
      WHEN copy > 1 THEN 'duplicate'
      WHEN NOT has_order THEN 'missing_order'
      WHEN order_unparseable IS NOT NULL THEN order_unparseable
      WHEN customer_id IS NULL THEN 'null_customer_id'
      WHEN product_id IS NULL THEN 'null_product_id'
      WHEN NOT known_customer THEN 'unknown_customer'
      WHEN usd_per_unit IS NULL THEN 'unknown_currency'
      WHEN quantity IS NULL OR quantity <= 0 THEN 'non_positive_quantity'
      WHEN quantity > {MAX_QUANTITY} THEN 'quantity_out_of_range'
      WHEN unit_price IS NULL OR unit_price <= 0 THEN 'non_positive_price'
      WHEN isnan(unit_price) OR unit_price > {MAX_UNIT_PRICE!r} THEN 'unit_price_out_of_range'
      WHEN amount IS NULL OR amount > {MAX_AMOUNT_USD} THEN 'amount_out_of_range'
    END AS reason
  FROM priced)
-- Timestamps stay instants (TIMESTAMPTZ): Arrow drops the zone, keeping UTC.
SELECT
  order_id, line_no, customer_id, product_id, ordered_at, status, channel, currency,
  quantity, unit_price, usd_per_unit,
  CASE WHEN reason IS NULL THEN CAST(round(amount, 2) AS DOUBLE) END AS amount_usd,
  updated_at, reason, {UNPARSED}, CAST($day AS DATE) AS date
FROM checked
"""

# The reasons in the order PURCHASES_SQL checks them (the test holds them to the Spark step's).
REASONS = (
    *(f"unparseable_{c}" for c in ITEM_COLUMNS),
    "duplicate",
    "missing_order",
    *(f"unparseable_{c}" for c in ORDER_COLUMNS if c not in ITEM_COLUMNS),
    "null_customer_id",
    "null_product_id",
    "unknown_customer",
    "unknown_currency",
    "non_positive_quantity",
    "quantity_out_of_range",
    "non_positive_price",
    "unit_price_out_of_range",
    "amount_out_of_range",
)


def _to_arrow(relation: duckdb.DuckDBPyRelation) -> pa.Table:
    # DuckDB 2: to_arrow_table(); DuckDB 1.x: arrow() returns the table.
    fetch = getattr(relation, "to_arrow_table", None) or relation.arrow
    return fetch()


def current_files(table: Path, day: str) -> list[str]:
    """The files of a day's partitions (its hours, for hourly tables) in the current version
    of the Delta table at `table`, read from its log with delta-rs."""
    actions = pa.table(DeltaTable(str(table)).get_add_actions(flatten=True))
    return sorted(
        str(table / path)
        for path, partition in zip(
            actions.column("path").to_pylist(),
            actions.column("partition.date").to_pylist(),
            strict=True,
        )
        if partition == day
    )


def raw_files(lake_root: Path, day: str) -> dict[str, list[str]]:
    """The day's raw Parquet files: every hour of orders and order lines, the CRM snapshot."""
    date.fromisoformat(day)  # a day, not a pattern
    files = {
        "orders": current_files(lake_root / "raw/orders", day),
        "items": current_files(lake_root / "raw/order_items", day),
        "customers": current_files(lake_root / "raw/crm_customers", day),
    }
    for name, found in files.items():
        if not found:
            raise FileNotFoundError(f"no raw {name} for {day} under {lake_root / 'raw'}")
    return files


def purchases_duckdb(
    lake_root: Path, day: str, *, connection: duckdb.DuckDBPyConnection | None = None
) -> tuple[pa.Table, pa.Table]:
    """(valid purchases, quarantined lines) of one daily partition, from raw/orders and
    raw/order_items (every hourly partition under date=`day`) and raw/crm_customers/date=`day`,
    with the columns of curated/purchases and quarantine/purchases (docs/lake.md), `date`
    included. Rows in no particular order."""
    db = connection if connection is not None else duckdb.connect()
    try:
        lines = _to_arrow(
            db.sql(PURCHASES_SQL, params={**raw_files(Path(lake_root), day), "day": day})
        )
    finally:
        if connection is None:
            db.close()
    quarantined = pc.is_valid(lines.column("reason"))
    valid_schema, quarantine_schema = documented_schema(CURATED), documented_schema(QUARANTINE)
    valid = lines.filter(pc.invert(quarantined)).select(valid_schema.names)
    bad = lines.filter(quarantined).select(quarantine_schema.names)
    return valid.cast(valid_schema), bad.cast(quarantine_schema)


# Comparison with what Spark wrote ---------------------------------------------------------------


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _lake_scan(lake_root: Path, table: str, day: str) -> str:
    files = current_files(Path(lake_root) / table, day)
    if not files:
        raise FileNotFoundError(f"{table} has no partition date={day} under {lake_root}")
    # `date` is in the path, not in the files (the lake contract): taken from there.
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    return f"read_parquet([{listed}], hive_partitioning = true, hive_types = {{'date': DATE}})"


def _differences(
    db: duckdb.DuckDBPyConnection, table: str, day: str, mine: pa.Table, scan: str
) -> list[str]:
    label = f"{table} date={day}"
    expected = documented_schema(table)
    if mine.schema != expected:
        return [f"{label}: DuckDB's columns {mine.schema} are not the documented {expected}"]
    lake_columns = [r[0] for r in db.sql(f"DESCRIBE SELECT * FROM {scan}").fetchall()]
    if sorted(lake_columns) != sorted(expected.names):
        return [f"{label}: the lake's columns {lake_columns} != documented {expected.names}"]
    names = expected.names
    # Timestamps as UTC instants: Spark's INT96 reads without a zone and holds UTC.
    columns = ", ".join(
        f"CAST({n} AS TIMESTAMP_NS) AS {n}" if pa.types.is_timestamp(t) else n
        for n, t in zip(names, expected.types, strict=True)
    )
    # Each side as a multiset (distinct rows and how often), matched on every column: NULL
    # matches NULL, NaN matches NaN. What is left over differs.
    same_row = " AND ".join(f"a.{n} IS NOT DISTINCT FROM b.{n}" for n in names)
    differing = f"""
        WITH a AS (SELECT {columns}, count(*) AS n FROM duckdb_side GROUP BY ALL),
        b AS (SELECT {columns}, count(*) AS n FROM {scan} GROUP BY ALL),
        d AS (
          SELECT {", ".join(f"coalesce(a.{n}, b.{n}) AS {n}" for n in names)},
                 coalesce(a.n, 0) - coalesce(b.n, 0) AS more_from_duckdb
          FROM a FULL OUTER JOIN b ON {same_row}
          WHERE coalesce(a.n, 0) <> coalesce(b.n, 0))
        SELECT *, sum(greatest(more_from_duckdb, 0)) OVER () AS only_duckdb,
               sum(greatest(-more_from_duckdb, 0)) OVER () AS only_lake
        FROM d ORDER BY ALL LIMIT {2 * SHOWN}"""
    db.register("duckdb_side", mine)
    try:
        [(lake_rows,)] = db.sql(f"SELECT count(*) FROM {scan}").fetchall()
        result = db.sql(differing)
        rows = [dict(zip(result.columns, r, strict=True)) for r in result.fetchall()]
    finally:
        db.unregister("duckdb_side")
    found = []
    if mine.num_rows != lake_rows:
        found.append(f"{label}: {mine.num_rows} rows from DuckDB, {lake_rows} in the lake")
    if not rows:
        return found
    found.append(
        f"{label}: {rows[0]['only_duckdb']} row(s) only from DuckDB, "
        f"{rows[0]['only_lake']} only in the lake"
    )
    # Pair the rows shown by their line and name the columns that differ.
    shown = {side: [] for side in (True, False)}
    for row in rows:
        shown[row["more_from_duckdb"] > 0].append({n: row[n] for n in names})
    by_key = {tuple(r[k] for k in KEY): r for r in shown[False]}
    for row in shown[True]:
        other = by_key.pop(tuple(row[k] for k in KEY), None)
        if other is None:
            found.append(f"{label}: only from DuckDB: {row}")
            continue
        diff = {n: (row[n], other[n]) for n in names if not _same(row[n], other[n])}
        line = ", ".join(f"{k}={row[k]}" for k in KEY)
        found.append(
            f"{label}: {line}: "
            + "; ".join(f"{n}: DuckDB {a!r} != lake {b!r}" for n, (a, b) in diff.items())
        )
    found += [f"{label}: only in the lake: {row}" for row in by_key.values()]
    return found


def compare_with_lake(
    lake_root: Path,
    day: str,
    valid: pa.Table,
    quarantined: pa.Table,
    *,
    connection: duckdb.DuckDBPyConnection | None = None,
) -> list[str]:
    """Differences between DuckDB's tables (`purchases_duckdb`) and what the lake holds in
    curated/purchases/date=`day` and quarantine/purchases/date=`day`; empty when they hold the
    same rows, row for row (as multisets: every column equal, duplicates counted).

    Every column is compared exactly: timestamps as UTC instants (Spark's INT96 reads as
    timestamp[ns] without a zone, holding UTC), doubles bit for bit up to NaN == NaN and
    -0.0 == 0.0 (amount_usd is decimal arithmetic on both sides), nulls equal to nulls. The
    lake's `date` comes from its path."""
    date.fromisoformat(day)
    db = connection if connection is not None else duckdb.connect()
    try:
        return [
            *_differences(db, CURATED, day, valid, _lake_scan(lake_root, CURATED, day)),
            *_differences(db, QUARANTINE, day, quarantined, _lake_scan(lake_root, QUARANTINE, day)),
        ]
    finally:
        if connection is None:
            db.close()
