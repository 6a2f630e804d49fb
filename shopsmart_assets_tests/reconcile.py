"""Independent reconciliation of the lake with the source databases.

The rules of docs/lake.md applied by SQLite to the sources, compared with DuckDB's reading of
the lake: nothing here calls the code under test.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pytest

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


HOUR_DIR = re.compile(r"date=(\d{4}-\d\d-\d\d)/hour=(\d\d)(\d\d)([+-]\d{4})$")


def hour_starts(lake: Path, table: str, day: date) -> list[datetime]:
    """The start instants the lake's hourly directories of a day name (the lake contract:
    `date=YYYY-MM-DD/hour=HHMM±HHMM`, local start and UTC offset), in time order."""
    starts = []
    for directory in (lake / "raw" / table / f"date={day}").iterdir():
        found = HOUR_DIR.search(directory.as_posix())
        assert found, directory
        d, hours, minutes, offset = found.groups()
        starts.append(datetime.strptime(f"{d} {hours}{minutes} {offset}", "%Y-%m-%d %H%M %z"))
    return sorted(starts)


def sources(crm_db: Path, orders_db: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(orders_db)
    connection.execute("ATTACH ? AS crm", (str(crm_db),))
    return connection


def lake_sql(lake: Path, sql: str) -> list[tuple]:
    return duckdb.connect().execute(sql.replace("LAKE", str(lake))).fetchall()


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
    [(valid, usd)] = lake_sql(
        lake,
        f"SELECT count(*), sum(amount_usd) FROM read_parquet("
        f"'LAKE/curated/purchases/date={day}/*.parquet')",
    )
    [(quarantined,)] = lake_sql(
        lake, f"SELECT count(*) FROM read_parquet('LAKE/quarantine/purchases/date={day}/*.parquet')"
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
    for start, end in zip(starts, ends, strict=True):
        directory = f"hour={start:%H%M%z}"
        [(expected,)] = db.execute(
            "SELECT count(*) FROM orders WHERE ordered_at >= ? AND ordered_at < ?",
            (utc_text(start), utc_text(end)),
        ).fetchall()
        files = f"LAKE/raw/orders/date={day}/{directory}/*.parquet"
        [(landed,)] = lake_sql(lake, f"SELECT count(*) FROM read_parquet('{files}')")
        assert landed == expected, (day, directory, landed, expected)
    return source_lines
