"""The whole chain for 2 days on small generated sources, through Dagster, on real Spark.

The lake is reconciled against the source databases independently of the code under test
(reconcile.py: the rules of docs/lake.md, applied by SQLite to the sources).
"""

from __future__ import annotations

import json
from datetime import timedelta

import dagster as dg
import duckdb
import pandas as pd
import pytest

from shopsmart_assets.defs.ml import MEETS_BAR, PURCHASE_MODEL_KEY
from shopsmart_assets_tests import reconcile
from shopsmart_assets_tests.harness import DAILY, HOURLY, START, Platform

pytestmark = [pytest.mark.spark, pytest.mark.e2e]

DAY1, DAY2 = START, START + timedelta(days=1)


def lake_sql(p: Platform, sql: str) -> list[tuple]:
    return reconcile.lake_sql(p.root / "lake", sql)


def sources(p: Platform):
    return reconcile.sources(p.root / "crm.db", p.root / "orders.db")


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
        champion = p.path("ml/champion_model", str(day)) / "champion.json"
        assert json.loads(champion.read_text())["model_partition"] is None
        assert not (champion.parent / "model.joblib").exists()


def test_lake_reconciles_with_the_sources(two_days):
    p, _ = two_days
    for day in (DAY1, DAY2):
        source_lines = reconcile.assert_lake_reconciles(
            p.root / "lake", p.root / "crm.db", p.root / "orders.db", day
        )
        assert source_lines > 100


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
    # as the sources store instants: naive UTC text (not a Python datetime, whose sqlite3
    # adapter is process-wide: Feast's SQLite online store replaces it with epoch seconds)
    at = "2026-01-01 10:30:00"
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
