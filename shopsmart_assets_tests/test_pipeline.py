"""The whole chain for 2 days on small generated sources, through Dagster, on real Spark.

The lake is reconciled against the source databases independently of the code under test
(reconcile.py: the rules of docs/lake.md, applied by SQLite to the sources).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dagster as dg
import pandas as pd
import pytest
from deltalake import DeltaTable

from shopsmart_assets.cli.lake import lineage_walker
from shopsmart_assets.defs.automation.recovery import (
    WatchedAssets,
    stale_inputs_request,
    stale_partitions_of_days,
)
from shopsmart_assets.defs.ml import MEETS_BAR, PURCHASE_MODEL_KEY
from shopsmart_assets.lake.delta import commit_info
from shopsmart_assets.lake.provenance import lineage_lines, partition_commits
from shopsmart_assets_tests import reconcile
from shopsmart_assets_tests.harness import DAILY, HOURLY, START, Platform, requested_partitions

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
    # built in order, nothing was built from inputs rebuilt since
    watched = WatchedAssets(p.graph, p.partitions)
    assert stale_partitions_of_days(watched, p.lake, [str(DAY1), str(DAY2)]) == {}


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
        record = p.champion(str(day))
        assert record.champion is None and not record.promoted


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
            frame = pd.DataFrame(
                lake_sql(p, f"SELECT * FROM {zone}__{table} WHERE date = '{DAY2}'")
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
        "SELECT count(*), count(DISTINCT (order_id, line_no)) FROM curated__purchases "
        f"WHERE date = '{DAY2}'",
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
        "SELECT line_no, reason, unit_price FROM quarantine__purchases WHERE order_id = 777777",
    )
    assert rows == [(1, "non_positive_price", -19.99)]
    [(valid,)] = lake_sql(
        platform,
        "SELECT count(*) FROM curated__purchases WHERE order_id = 777777",
    )
    assert valid == 1


def test_the_lake_reads_as_delta_tables_with_duckdb_pandas_and_spark(two_days, spark):
    """Every table is a Delta table: DuckDB (over delta-rs' Arrow dataset), pandas
    (`to_pandas`) and Spark (the version's file list, with the table as base path) read the
    same current version, partition columns included; a glob over the directory would not
    (after a re-run it also holds the replaced files)."""
    p, _ = two_days
    table = p.root / "lake" / "curated" / "purchases"
    [(duck,)] = lake_sql(p, f"SELECT count(*) FROM curated__purchases WHERE date = '{DAY2}'")
    delta = DeltaTable(str(table))
    frame = delta.to_pandas(filters=[("date", "=", str(DAY2))])
    files = delta.file_uris()
    by_spark = (
        spark.read.option("basePath", str(table)).parquet(*files).where(f"date = '{DAY2}'").count()
    )
    assert duck == len(frame) == by_spark > 0
    assert {"date", "hour"} <= set(
        DeltaTable(str(p.root / "lake" / "raw" / "orders")).schema().to_arrow().names
    )
    history = delta.history()
    assert history and all("operation" in entry for entry in history)


def test_a_partition_tells_what_it_was_built_from_down_to_the_source_rows(two_days):
    """The lineage of a training set (its commits' provenance): the purchases of its label
    window, the hours of orders they were built from, and each hour's rows in the source as
    its extraction counted them, which add up to the source's own count."""
    p, _ = two_days
    walker = lineage_walker(p.lake, p)
    tree = walker.of("features/training_set", str(DAY2))
    assert tree.commit is not None and tree.commit.run_id
    purchases = [n for n in tree.inputs if n.table == "curated/purchases"]
    assert [n.partition for n in purchases] == [str(DAY1), str(DAY2)]
    day2 = purchases[1]
    hours = [n for n in day2.inputs if n.table == "raw/orders"]
    assert len(hours) == 24 and all(not n.inputs for n in hours)
    with sources(p) as db:
        [(in_source,)] = db.execute(
            "SELECT count(*) FROM orders WHERE ordered_at >= ? AND ordered_at < ?",
            (f"{DAY2} 00:00:00", f"{DAY2 + timedelta(days=1)} 00:00:00"),
        ).fetchall()
    assert sum(n.commit.info["source_rows"] for n in hours) == in_source > 0
    lines = list(lineage_lines(tree))
    assert lines[0].startswith(f"features/training_set {DAY2}  (v")
    assert any(f"raw/orders {DAY2}-13:00" in line and "orders.orders:" in line for line in lines)


def test_a_range_of_hours_is_one_commit_a_day_and_each_hour_knows_its_own(two_days):
    """The two days of hours were extracted in one run: one commit per day per table, each
    listing its own day's hours and each hour's source rows; every hour's materialization
    names the version of its own day's commit."""
    p, _ = two_days
    key = dg.AssetKey(["raw", "orders"])
    table = p.lake.table(key, p.partitions.hourly)
    commits = partition_commits(table)
    assert len(commits) == 48
    for day in (DAY1, DAY2):
        hours = p.partitions.hours_of_day(str(day))
        [version] = {commits[h].version for h in hours}
        [entry] = [e for e in table.history() if int(e["version"]) == version]
        recorded = commit_info(entry)
        assert recorded["partitions"] == sorted(hours)
        assert sorted(recorded["source_rows"]) == sorted(hours)
        for hour in hours:
            assert commits[hour].info["source_rows"] == recorded["source_rows"][hour]
            [record] = p.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, asset_partitions=[hour]), limit=1
            ).records
            assert record.asset_materialization.metadata["lake_version"].value == version
    assert commits[f"{DAY1}-00:00"].version != commits[f"{DAY2}-00:00"].version


def test_a_partition_built_before_its_inputs_changed_is_found_and_rebuilt(two_days):
    """(Last in the module: it changes the days.) A late refund of the first day, re-extracted
    and its purchases rebuilt, and nothing downstream: the features and training sets whose
    windows hold that day now record inputs the lake no longer holds. Their commits'
    provenance finds them, with nothing else; the backfill it asks for rebuilds them and
    what depends on them, after which every partition is current again."""
    p, _ = two_days
    days = [str(DAY1), str(DAY2)]
    watched = WatchedAssets(p.graph, p.partitions)
    # what the module's earlier tests left stale: a re-run of a partition commits new files,
    # so what read the replaced ones is stale too (test_rerunning_a_partition_changes_nothing
    # rebuilds day 2's purchases and features: day 2's training set and scores read them)
    before = {
        k.to_user_string(): v for k, v in stale_partitions_of_days(watched, p.lake, days).items()
    }
    assert set(before) <= {"ml/training_set", "ml/purchase_scores"}, before
    with sources(p) as db:
        [(order_id,)] = db.execute(
            "SELECT order_id FROM orders WHERE status = 'placed' AND ordered_at >= ? "
            "AND ordered_at < ? ORDER BY order_id LIMIT 1",
            (f"{DAY1} 00:00:00", f"{DAY2} 00:00:00"),
        ).fetchall()
        db.execute(
            "UPDATE orders SET status = 'refunded', updated_at = ? WHERE order_id = ?",
            (f"{DAY2} 12:00:00", order_id),
        )
    p.materialize(HOURLY, *p.hours(DAY1))
    p.materialize(["lake/purchases"], str(DAY1))
    stale = stale_partitions_of_days(watched, p.lake, days)
    assert {k.to_user_string(): v for k, v in stale.items()} == {
        **before,
        "features/customer_features": days,
        "ml/training_set": days,
    }
    now = datetime.combine(DAY2 + timedelta(days=1), datetime.min.time(), timezone.utc)
    request = stale_inputs_request(p.instance, now, p.lake, watched)
    assert isinstance(request, dg.RunRequest), request
    planned = {k.to_user_string(): v for k, v in requested_partitions(request).items()}
    assert planned["ml/training_set"] == days and planned["ml/purchase_model"] == [str(DAY2)]
    p.run_backfill(planned)
    assert stale_partitions_of_days(watched, p.lake, days) == {}
    for day in (DAY1, DAY2):
        reconcile.assert_lake_reconciles(
            p.root / "lake", p.root / "crm.db", p.root / "orders.db", day
        )
