"""The ML end of the chain over 10 days: a model is trained, recorded and promoted, and the
blocking check keeps a model below the bar out of service."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone

import dagster as dg
import joblib
import pytest

from shopsmart_assets.assets.ml import CHAMPION_MODEL_KEY, MEETS_BAR, PURCHASE_MODEL_KEY
from shopsmart_assets.backfill_requests import requested_partitions
from shopsmart_assets.recovery import Chain, late_data_request
from shopsmart_assets.resources import OnlineStoreResource, PromotionPolicy, SourceDatabase
from shopsmart_assets_tests import reconcile
from shopsmart_assets_tests.conftest import START, Platform

pytestmark = [pytest.mark.spark, pytest.mark.e2e]

DAY = timedelta(days=1)
LAST = START + 9 * DAY


@pytest.fixture(scope="module")
def ten_days(module_platform: Platform, spark) -> Platform:
    module_platform.generate(START, days=10, orders_per_day=120)
    module_platform.materialize_days(START, LAST)
    return module_platform


def model_metadata(p: Platform, day) -> dict:
    records = p.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=PURCHASE_MODEL_KEY, asset_partitions=[str(day)]), limit=1
    ).records
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def test_model_is_trained_out_of_time_and_records_its_inputs(ten_days):
    p = ten_days
    meta = model_metadata(p, LAST)
    assert meta["trained"] is True
    assert 0.5 < meta["auc"] <= 1.0
    # trained on the training-set partitions before the last day, evaluated on the last day
    trained_on = meta["trained_on"]
    assert sorted(trained_on) == [str(START + timedelta(days=k)) for k in range(10)]
    assert trained_on[str(START)] == "empty"  # no labels yet in the first week
    assert trained_on[str(LAST)] != "empty"
    record = json.loads((p.path("ml/purchase_model", str(LAST)) / "metrics.json").read_text())
    assert record["metrics"]["auc"] == meta["auc"]
    assert record["trained_on"] == trained_on
    # the first labelled day has no history to train on
    assert model_metadata(p, START + timedelta(days=7))["trained"] is False


def test_champion_serves_the_promoted_model(ten_days):
    p = ten_days
    directory = p.path("ml/champion_model", str(LAST))
    record = json.loads((directory / "champion.json").read_text())
    assert record["model_partition"] is not None
    model = joblib.load(directory / "model.joblib")
    assert hasattr(model, "predict_proba")
    assert p.instance.get_materialized_partitions(CHAMPION_MODEL_KEY) >= {str(LAST)}


def test_blocking_check_keeps_a_weak_model_out(ten_days):
    p = ten_days
    before = (p.path("ml/champion_model", str(LAST)) / "champion.json").read_text()
    result = p.materialize(
        ["ml/purchase_model", "ml/champion_model"],
        str(LAST),
        raise_on_error=False,
        promotion_policy=PromotionPolicy(min_auc=0.999),
    )
    assert not result.success
    [gate] = [e for e in result.get_asset_check_evaluations() if e.check_name == MEETS_BAR]
    assert not gate.passed and "below the minimum" in gate.description
    assert gate.severity == dg.AssetCheckSeverity.ERROR
    champion_steps = [
        e for e in result.all_events if e.step_key == "ml__champion_model" and e.is_step_success
    ]
    assert champion_steps == []
    after = (p.path("ml/champion_model", str(LAST)) / "champion.json").read_text()
    assert after == before


STANDING_ORDERS_SQL = """
WITH versions AS MATERIALIZED (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY order_id ORDER BY updated_at DESC, status) AS v
  FROM orders),
good AS MATERIALIZED (
  SELECT DISTINCT order_id FROM order_items
  WHERE quantity > 0 AND unit_price > 0 AND product_id IS NOT NULL)
SELECT count(DISTINCT order_id) FROM versions
WHERE v = 1 AND customer_id = :customer AND status NOT IN ('refunded', 'cancelled')
  AND currency IN ('USD', 'EUR', 'GBP', 'CAD') AND order_id IN (SELECT order_id FROM good)
  AND ordered_at >= :lo AND ordered_at < :hi
"""


def standing_orders(p: Platform, customer: int, first, last) -> int:
    """Orders of a customer placed first..last that stood, by SQL over the source alone."""
    with sqlite3.connect(p.root / "orders.db") as db:
        return db.execute(
            STANDING_ORDERS_SQL,
            {"customer": customer, "lo": f"{first} 00:00:00", "hi": f"{last + DAY} 00:00:00"},
        ).fetchone()[0]


def lake_value(p: Platform, sql: str):
    [(value,)] = reconcile.lake_sql(p.root / "lake", sql)
    return value


def test_a_late_refund_reaches_every_feature_training_example_and_the_online_store(ten_days):
    """A refund of an order of day 5, arriving after day 10 was loaded, is re-extracted with
    its day, and every partition whose inputs include day 5 is rebuilt: the features of days
    5..10 (90-day windows), the training sets whose label window holds day 5, the online store
    and the model in service. Checked against SQL over the source, independently."""
    p = ten_days
    changed_day = START + 4 * DAY
    with sqlite3.connect(p.root / "orders.db") as db:
        # a customer with exactly one order that stood over the ten days, placed on day 5
        candidates = [
            r[0]
            for r in db.execute(
                "SELECT customer_id FROM orders WHERE ordered_at >= ? AND ordered_at < ? "
                "AND status = 'placed' AND customer_id < 900000000 GROUP BY customer_id "
                "ORDER BY customer_id",
                (f"{changed_day} 00:00:00", f"{changed_day + DAY} 00:00:00"),
            )
        ]
    first_labelled = START + 7 * DAY
    known_since_start = {
        row[0]
        for row in reconcile.lake_sql(
            p.root / "lake",
            "SELECT customer_id FROM read_parquet("
            f"'LAKE/features/training_set/date={first_labelled}/*')",
        )
    }
    customer = next(
        c
        for c in candidates
        if c in known_since_start
        and standing_orders(p, c, START, LAST) == 1
        and standing_orders(p, c, changed_day, changed_day) == 1
    )
    features_sql = (
        "SELECT frequency_90d FROM read_parquet('LAKE/features/customer_features/date={day}/*')"
        f" WHERE customer_id = {customer}"
    )
    label_sql = (
        "SELECT label FROM read_parquet('LAKE/features/training_set/date={day}/*')"
        f" WHERE customer_id = {customer}"
    )
    assert lake_value(p, features_sql.format(day=LAST)) == 1
    label_days = [START + k * DAY for k in range(7, 10)]  # the training sets there are
    assert [lake_value(p, label_sql.format(day=d)) for d in label_days] == [1, 1, 1]

    # The refund, as the orders system records it, after everything was loaded.
    with sqlite3.connect(p.root / "orders.db") as db:
        db.execute(
            "UPDATE orders SET status = 'refunded', updated_at = ? WHERE customer_id = ? "
            "AND ordered_at >= ? AND ordered_at < ?",
            (
                f"{LAST + DAY} 05:00:00",
                customer,
                f"{changed_day} 00:00:00",
                f"{changed_day + DAY} 00:00:00",
            ),
        )
    now = datetime.combine(LAST + DAY, datetime.min.time(), tzinfo=timezone.utc) + timedelta(
        hours=6
    )
    chain = Chain(p.lineage, p.partitions)
    orders = SourceDatabase(name="orders", url=p.orders_url)
    request, _ = late_data_request(p.instance, now, orders, p.lake, None, chain)
    partitions = {k.to_user_string(): v for k, v in requested_partitions(request).items()}
    days = [str(START + k * DAY) for k in range(4, 10)]
    assert partitions["lake/purchases"] == [str(changed_day)]
    assert partitions["features/customer_features"] == days
    assert partitions["ml/training_set"] == days
    for serving in ("features/online_store", "ml/purchase_model", "ml/champion_model"):
        assert partitions[serving] == [str(LAST)]
    assert p.run_backfill(partitions) <= 8  # a handful of runs, each asset over its range

    # features: every day from the refund on counts what the source says stood
    for k in range(0, 10):
        day = START + k * DAY
        expected = standing_orders(p, customer, max(START, day - 89 * DAY), day)
        assert lake_value(p, features_sql.format(day=day)) == expected, day
    assert lake_value(p, features_sql.format(day=LAST)) == 0
    # training sets: the label is whether an order stood in the 7 days the label covers
    for day in label_days:
        expected = int(standing_orders(p, customer, day - 6 * DAY, day) > 0)
        assert lake_value(p, label_sql.format(day=day)) == expected == 0, day
    # the online store serves the refunded state
    store = OnlineStoreResource(url=f"sqlite:///{p.root / 'online.db'}")
    served = store.get(customer)
    assert served["frequency_90d"] == 0 and served["as_of_date"] == LAST
    # and every day still reconciles with the source
    for k in range(10):
        reconcile.assert_lake_reconciles(
            p.root / "lake", p.root / "crm.db", p.root / "orders.db", START + k * DAY
        )
