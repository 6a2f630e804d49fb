"""Independent reconciliation of the lake with the source databases.

The rules of docs/lake.md applied by SQLite to the sources, compared with DuckDB's reading of
the lake: nothing here calls the code under test.
"""

from __future__ import annotations

import sqlite3
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

# The finance team's reference rates in cents per 100 units, restated here so the check does
# not trust the code; amounts are computed in exact integer arithmetic, half up to the cent.
RATE_CENTS = {"USD": 100, "EUR": 108, "GBP": 127, "CAD": 73}

EXPECTED_VALID_SQL = """
WITH versions AS (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY order_id ORDER BY updated_at DESC, status) AS v
  FROM orders WHERE ordered_at >= :lo AND ordered_at < :hi AND order_id IS NOT NULL),
latest AS (SELECT * FROM versions WHERE v = 1),
lines AS (
  SELECT i.*, ROW_NUMBER() OVER (PARTITION BY i.order_id, i.line_no) AS copy
  FROM order_items i WHERE i.order_id IN (SELECT order_id FROM latest))
SELECT count(*),
  sum((l.quantity * CAST(round(l.unit_price * 100) AS INTEGER)
       * CASE h.currency {rates} END + 50) / 100) / 100.0
FROM lines l JOIN latest h ON h.order_id = l.order_id
WHERE l.copy = 1 AND h.customer_id IS NOT NULL AND l.product_id IS NOT NULL
  AND h.customer_id IN (SELECT customer_id FROM crm.customers WHERE signup_at < :hi)
  AND h.currency IN ({currencies}) AND l.quantity > 0 AND l.unit_price > 0
""".format(
    rates=" ".join(f"WHEN '{c}' THEN {r}" for c, r in RATE_CENTS.items()),
    currencies=", ".join(f"'{c}'" for c in RATE_CENTS),
)


def window(day: date) -> dict[str, str]:
    """A UTC day as the sources store it (the tests run with SHOPSMART_TIMEZONE=UTC)."""
    return {"lo": f"{day} 00:00:00", "hi": f"{day + timedelta(days=1)} 00:00:00"}


def sources(crm_db: Path, orders_db: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(orders_db)
    connection.execute("ATTACH ? AS crm", (str(crm_db),))
    return connection


def lake_sql(lake: Path, sql: str) -> list[tuple]:
    return duckdb.connect().execute(sql.replace("LAKE", str(lake))).fetchall()


def assert_lake_reconciles(lake: Path, crm_db: Path, orders_db: Path, day: date) -> int:
    """Assert the day's lake tables match the sources exactly; returns the source lines."""
    db = sources(crm_db, orders_db)
    source_lines = db.execute(
        "SELECT count(*) FROM order_items WHERE order_id IN (SELECT order_id FROM orders "
        "WHERE ordered_at >= :lo AND ordered_at < :hi)",
        window(day),
    ).fetchone()[0]
    expected_valid, expected_usd = db.execute(EXPECTED_VALID_SQL, window(day)).fetchone()
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
    # raw zone: every hour holds exactly the source's orders of that hour
    per_hour = dict(
        db.execute(
            "SELECT CAST(strftime('%H', ordered_at) AS INT), count(*) FROM orders "
            "WHERE ordered_at >= :lo AND ordered_at < :hi GROUP BY 1",
            window(day),
        ).fetchall()
    )
    landed = dict(
        lake_sql(
            lake,
            "SELECT CAST(hour AS INT), count(*) FROM read_parquet("
            f"'LAKE/raw/orders/date={day}/*/*.parquet', hive_partitioning=true) GROUP BY 1",
        )
    )
    assert {h: n for h, n in landed.items() if n} == per_hour
    return source_lines
