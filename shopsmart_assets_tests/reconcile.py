"""Independent reconciliation of the lake with the source databases.

The rules of docs/lake.md applied by SQLite to the sources, compared with DuckDB's reading of
the lake's Delta tables (their current versions, through delta-rs as any reader would):
nothing here calls the code under test.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa
import pytest
from deltalake import DeltaTable

# The finance team's reference rates in cents per 100 units, restated here so the check does
# not trust the code; amounts are computed in exact integer arithmetic, half up to the cent.
RATE_CENTS = {"USD": 100, "EUR": 108, "GBP": 127, "CAD": 73}

EXPECTED_VALID_SQL = """
WITH versions AS MATERIALIZED (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY order_id ORDER BY updated_at DESC, status) AS v
  FROM orders WHERE ordered_at >= :lo AND ordered_at < :hi AND order_id IS NOT NULL),
latest AS MATERIALIZED (SELECT * FROM versions WHERE v = 1),
lines AS MATERIALIZED (
  SELECT i.*, ROW_NUMBER() OVER (PARTITION BY i.order_id, i.line_no) AS copy
  FROM order_items i WHERE i.order_id IN (SELECT order_id FROM latest))
SELECT count(*),
  sum((l.quantity * CAST(round(l.unit_price * 100) AS INTEGER)
       * CASE h.currency {rates} END + 50) / 100) / 100.0
FROM lines l JOIN latest h ON h.order_id = l.order_id
WHERE l.copy = 1 AND h.customer_id IS NOT NULL AND l.product_id IS NOT NULL
  AND typeof(l.order_id) = 'integer' AND typeof(l.line_no) = 'integer'
  AND typeof(l.product_id) = 'integer' AND typeof(l.quantity) = 'integer'
  AND typeof(l.unit_price) IN ('real', 'integer') AND typeof(h.customer_id) = 'integer'
  AND h.customer_id IN (SELECT customer_id FROM crm.customers WHERE signup_at < :hi)
  AND h.currency IN ({currencies}) AND l.quantity > 0 AND l.unit_price > 0
  AND l.quantity <= 100000 AND l.unit_price <= 1000000
  AND l.quantity * l.unit_price * CASE h.currency {rates} END <= 100 * 10000000
""".format(
    rates=" ".join(f"WHEN '{c}' THEN {r}" for c, r in RATE_CENTS.items()),
    currencies=", ".join(f"'{c}'" for c in RATE_CENTS),
)


def utc_text(at: datetime) -> str:
    """An instant as the sources store it: naive UTC text."""
    return at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def window(day: date, tz: str = "UTC") -> dict[str, str]:
    """A local day of `tz` as a UTC window the sources can be queried with (23, 24 or 25
    hours long on DST days), computed with zoneinfo alone."""
    zone = ZoneInfo(tz)
    start = datetime.combine(day, time(), zone)
    end = datetime.combine(day + timedelta(days=1), time(), zone)
    return {"lo": utc_text(start), "hi": utc_text(end)}


HOUR = re.compile(r"^(\d\d)(\d\d)([+-]\d{4})$")


def delta_table(lake: Path, table: str) -> duckdb.DuckDBPyConnection:
    """A connection where `t` is the current version of the lake's Delta table `table`."""
    connection = duckdb.connect()
    connection.register("t", DeltaTable(str(lake / table)).to_pyarrow_dataset())
    return connection


def partitions_held(lake: Path, table: str) -> list[dict[str, str]]:
    """The partition values of every file in the table's current version (from its log:
    partitions without rows included)."""
    actions = pa.table(DeltaTable(str(lake / table)).get_add_actions(flatten=True))
    columns = [c for c in actions.column_names if c.startswith("partition.")]
    return [
        {k.removeprefix("partition."): v for k, v in row.items()}
        for row in actions.select(columns).to_pylist()
    ]


def hour_starts(lake: Path, table: str, day: date) -> list[datetime]:
    """The start instants the table's hourly partitions of a day name (the lake contract:
    `date=YYYY-MM-DD/hour=HHMM±HHMM`, local start and UTC offset), in time order."""
    hours = {p["hour"] for p in partitions_held(lake, f"raw/{table}") if p["date"] == str(day)}
    starts = []
    for hour in hours:
        found = HOUR.match(hour)
        assert found, hour
        hh, mm, offset = found.groups()
        starts.append(datetime.strptime(f"{day} {hh}{mm} {offset}", "%Y-%m-%d %H%M %z"))
    return sorted(starts)


def register(connection: duckdb.DuckDBPyConnection, name: str, table: Path) -> None:
    """The current version of the Delta table at `table` as the view `name`."""
    connection.register(name, DeltaTable(str(table)).to_pyarrow_dataset())


def lake_sql(lake: Path, sql: str, params: list | None = None) -> list[tuple]:
    """`sql` over the current versions of the lake's Delta tables, each a view named
    `<zone>__<table>` (`curated__purchases`), read through delta-rs."""
    connection = duckdb.connect()
    for log in sorted(lake.glob("*/*/_delta_log")):
        zone, table = log.parent.parts[-2:]
        register(connection, f"{zone}__{table}", log.parent)
    return connection.execute(sql, params or []).fetchall()


def sources(crm_db: Path, orders_db: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(orders_db)
    connection.execute("ATTACH ? AS crm", (str(crm_db),))
    return connection


def assert_lake_reconciles(
    lake: Path, crm_db: Path, orders_db: Path, day: date, tz: str = "UTC"
) -> int:
    """Assert the day's lake tables match the sources exactly; returns the source lines."""
    db = sources(crm_db, orders_db)
    day_window = window(day, tz)
    source_lines = db.execute(
        "SELECT count(*) FROM order_items WHERE order_id IN (SELECT order_id FROM orders "
        "WHERE ordered_at >= :lo AND ordered_at < :hi)",
        day_window,
    ).fetchone()[0]
    expected_valid, expected_usd = db.execute(EXPECTED_VALID_SQL, day_window).fetchone()
    [(valid, usd)] = (
        delta_table(lake, "curated/purchases")
        .execute("SELECT count(*), sum(amount_usd) FROM t WHERE date = ?", [str(day)])
        .fetchall()
    )
    [(quarantined,)] = (
        delta_table(lake, "quarantine/purchases")
        .execute("SELECT count(*) FROM t WHERE date = ?", [str(day)])
        .fetchall()
    )
    assert valid == expected_valid, (day, valid, expected_valid)
    assert usd == pytest.approx(expected_usd or 0.0, abs=0.01)
    assert valid + quarantined == source_lines
    # raw zone: the hourly directories tile the local day, and each holds exactly the source's
    # orders of its window
    starts = hour_starts(lake, "orders", day)
    assert utc_text(starts[0]) == day_window["lo"]
    ends = [
        *starts[1:],
        datetime.strptime(day_window["hi"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc),
    ]
    orders = delta_table(lake, "raw/orders")
    for start, end in zip(starts, ends, strict=True):
        hour = f"{start:%H%M%z}"
        [(expected,)] = db.execute(
            "SELECT count(*) FROM orders WHERE ordered_at >= ? AND ordered_at < ?",
            (utc_text(start), utc_text(end)),
        ).fetchall()
        [(landed,)] = orders.execute(
            "SELECT count(*) FROM t WHERE date = ? AND hour = ?", [str(day), hour]
        ).fetchall()
        assert landed == expected, (day, hour, landed, expected)
    return source_lines
