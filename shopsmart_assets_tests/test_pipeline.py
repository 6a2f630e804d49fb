"""The whole chain for 2 days on small generated sources, through Dagster, on real Spark.

The lake is reconciled against the source databases with SQL written here, independently of
the code under test: the rules of docs/lake.md, applied by SQLite to the sources.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import date, datetime, timedelta

import dagster as dg
import duckdb
import pandas as pd
import pytest

from shopsmart_assets.assets.ml import MEETS_BAR, PURCHASE_MODEL_KEY
from shopsmart_assets_tests.conftest import DAILY, HOURLY, START, Platform

pytestmark = [pytest.mark.spark, pytest.mark.e2e]

DAY1, DAY2 = START, START + timedelta(days=1)
# The finance team's reference rates, restated here so the check does not trust the code.
RATES = {"USD": 1.0, "EUR": 1.08, "GBP": 1.27, "CAD": 0.73}

EXPECTED_VALID_SQL = """
WITH versions AS (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY order_id ORDER BY updated_at DESC, status) AS v
  FROM orders WHERE ordered_at >= :lo AND ordered_at < :hi AND order_id IS NOT NULL),
latest AS (SELECT * FROM versions WHERE v = 1),
lines AS (
  SELECT i.*, ROW_NUMBER() OVER (PARTITION BY i.order_id, i.line_no) AS copy
  FROM order_items i WHERE i.order_id IN (SELECT order_id FROM latest))
SELECT count(*), sum(round(l.quantity * l.unit_price * CASE h.currency {rates} END, 2))
FROM lines l JOIN latest h ON h.order_id = l.order_id
WHERE l.copy = 1 AND h.customer_id IS NOT NULL AND l.product_id IS NOT NULL
  AND h.customer_id IN (SELECT customer_id FROM crm.customers WHERE signup_at < :hi)
  AND h.currency IN ({currencies}) AND l.quantity > 0 AND l.unit_price > 0
""".format(
    rates=" ".join(f"WHEN '{c}' THEN {r}" for c, r in RATES.items()),
    currencies=", ".join(f"'{c}'" for c in RATES),
)


def window(day: date) -> dict[str, str]:
    return {"lo": f"{day} 00:00:00", "hi": f"{day + timedelta(days=1)} 00:00:00"}


def sources(p: Platform) -> sqlite3.Connection:
    connection = sqlite3.connect(p.orders_url.removeprefix("sqlite:///"))
    connection.execute("ATTACH ? AS crm", (p.crm_url.removeprefix("sqlite:///"),))
    return connection


def lake_sql(p: Platform, sql: str) -> list[tuple]:
    return duckdb.connect().execute(sql.replace("LAKE", str(p.root / "lake"))).fetchall()


@pytest.fixture(scope="module")
def two_days(module_platform: Platform, spark) -> tuple[Platform, dg.ExecuteInProcessResult]:
    module_platform.generate(DAY1, days=2, orders_per_day=150)
    result = module_platform.materialize_days(DAY1, DAY2, raise_on_error=False)
    return module_platform, result


def test_every_asset_is_materialized_for_both_days(two_days):
    p, _ = two_days
    for key in DAILY:
        assert p.instance.get_materialized_partitions(dg.AssetKey.from_user_string(key)) == {
            str(DAY1),
            str(DAY2),
        }, key
    for key in HOURLY:
        hours = p.instance.get_materialized_partitions(dg.AssetKey.from_user_string(key))
        assert len(hours) == 48 and f"{DAY2}-23:00" in hours


def test_without_enough_history_the_gate_warns_and_no_model_is_served(two_days):
    p, result = two_days
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    gate = [
        e for e in evaluations if e.asset_key == PURCHASE_MODEL_KEY and e.check_name == MEETS_BAR
    ]
    assert len(gate) == 1 and not gate[0].passed
    assert gate[0].severity == dg.AssetCheckSeverity.WARN
    assert "no candidate model" in gate[0].description
    for day in (DAY1, DAY2):
        champion = p.lake.partition_dir("models", "champion_model", day) / "champion.json"
        assert json.loads(champion.read_text())["model_partition"] is None
        assert not (champion.parent / "model.joblib").exists()


def test_lake_reconciles_with_the_sources(two_days):
    p, _ = two_days
    db = sources(p)
    for day in (DAY1, DAY2):
        source_lines = db.execute(
            "SELECT count(*) FROM order_items WHERE order_id IN (SELECT order_id FROM orders "
            "WHERE ordered_at >= :lo AND ordered_at < :hi)",
            window(day),
        ).fetchone()[0]
        expected_valid, expected_usd = db.execute(EXPECTED_VALID_SQL, window(day)).fetchone()
        [(valid, usd)] = lake_sql(
            p,
            "SELECT count(*), sum(amount_usd) FROM read_parquet("
            f"'LAKE/curated/purchases/date={day}/*.parquet')",
        )
        [(quarantined,)] = lake_sql(
            p,
            f"SELECT count(*) FROM read_parquet('LAKE/quarantine/purchases/date={day}/*.parquet')",
        )
        assert source_lines > 100
        assert valid == expected_valid
        assert usd == pytest.approx(expected_usd, abs=0.01)
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
                p,
                "SELECT CAST(hour AS INT), count(*) FROM read_parquet("
                f"'LAKE/raw/orders/date={day}/*/*.parquet', hive_partitioning=true)"
                " GROUP BY 1",
            )
        )
        assert {h: n for h, n in landed.items() if n} == per_hour


def test_every_materialization_reports_what_it_did(two_days):
    p, _ = two_days
    for day in (DAY1, DAY2):
        records = p.instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(["lake", "purchases"]), asset_partitions=[str(day)]
            ),
            limit=1,
        ).records
        metadata = records[0].asset_materialization.metadata
        valid = metadata["dagster/row_count"].value
        assert valid > 0
        assert metadata["source_rows"].value == valid + metadata["quarantined_rows"].value
        assert (
            sum(metadata["quarantine_reasons"].value.values()) == metadata["quarantined_rows"].value
        )
    features = p.instance.fetch_materializations(
        dg.AssetKey(["features", "customer_features"]), limit=1
    ).records[0]
    assert features.asset_materialization.metadata["dagster/row_count"].value > 0


def test_rerunning_a_partition_changes_nothing(two_days):
    p, _ = two_days
    tables = [
        ("curated", "purchases"),
        ("quarantine", "purchases"),
        ("features", "customer_features"),
        ("raw", "crm_customers"),
    ]

    def snapshot() -> dict[tuple[str, str], pd.DataFrame]:
        out = {}
        for zone, table in tables:
            frame = (
                duckdb.connect()
                .execute(
                    "SELECT * FROM read_parquet("
                    f"'{p.root}/lake/{zone}/{table}/date={DAY2}/*.parquet')"
                )
                .df()
            )
            out[(zone, table)] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
        return out

    before = snapshot()
    p.materialize(["raw/crm_customers", "lake/purchases", "features/customer_features"], str(DAY2))
    after = snapshot()
    for key in before:
        pd.testing.assert_frame_equal(before[key], after[key])
    [(rows, distinct)] = lake_sql(
        p,
        "SELECT count(*), count(DISTINCT (order_id, line_no)) FROM "
        f"read_parquet('LAKE/curated/purchases/date={DAY2}/*.parquet')",
    )
    assert rows == distinct


def test_a_malformed_source_row_lands_in_quarantine_with_its_reason(platform: Platform, spark):
    platform.generate(DAY1, days=1, orders_per_day=40)
    db = sources(platform)
    at = datetime(2026, 1, 1, 10, 30)
    with db:
        db.execute("INSERT INTO orders VALUES (777777, 1, ?, 'placed', 'USD', 'web', ?)", (at, at))
        db.execute("INSERT INTO order_items VALUES (777777, 1, 5, 2, -19.99)")
        db.execute("INSERT INTO order_items VALUES (777777, 2, 5, 1, 12.50)")
    platform.materialize(HOURLY, "2026-01-01-00:00", "2026-01-01-23:00")
    platform.materialize(["raw/crm_customers", "lake/purchases"], str(DAY1))
    rows = lake_sql(
        platform,
        "SELECT line_no, reason, unit_price FROM read_parquet("
        "'LAKE/quarantine/purchases/*/*.parquet') WHERE order_id = 777777",
    )
    assert rows == [(1, "non_positive_price", -19.99)]
    [(valid,)] = lake_sql(
        platform,
        "SELECT count(*) FROM read_parquet("
        "'LAKE/curated/purchases/*/*.parquet') WHERE order_id = 777777",
    )
    assert valid == 1


def test_the_lake_reads_directly_with_duckdb_pandas_and_spark(two_days, spark):
    p, _ = two_days
    table = p.root / "lake" / "curated" / "purchases"
    [(duck,)] = lake_sql(
        p,
        "SELECT count(*) FROM read_parquet('LAKE/curated/purchases/*/*.parquet', "
        f"hive_partitioning = true) WHERE date = DATE '{DAY2}'",
    )
    frame = pd.read_parquet(table)
    by_pandas = int((frame["date"].astype(str) == str(DAY2)).sum())
    by_spark = spark.read.parquet(str(table)).where(f"date = '{DAY2}'").count()
    assert duck == by_pandas == by_spark > 0
    hourly = pd.read_parquet(p.root / "lake" / "raw" / "orders")
    assert {"date", "hour"} <= set(hourly.columns)
