"""Customer features on small DataFrames: RFM windows, interactions, CRM attributes."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import pytest

from shopsmart_assets.transforms.features import customer_features

pytestmark = pytest.mark.spark

AS_OF = date(2026, 4, 30)
PURCHASE_SCHEMA = "date date, order_id long, customer_id long, status string, amount_usd double"
INTERACTION_SCHEMA = "date date, customer_id long, kind string"
CUSTOMER_SCHEMA = (
    "date date, customer_id long, email string, segment string, country string, signup_at timestamp"
)


def ago(days: int) -> date:
    return AS_OF - timedelta(days=days)


def features(spark, purchases, interactions=(), customers=None, as_of=(AS_OF,)):
    customers = customers or [
        (d, 1, "a@example.com", "consumer", "US", datetime(2025, 4, 30)) for d in as_of
    ] + [(d, 2, "not-an-email", "premium", "GB", datetime(2026, 4, 1)) for d in as_of]
    frame = customer_features(
        spark.createDataFrame(purchases, PURCHASE_SCHEMA),
        spark.createDataFrame(list(interactions), INTERACTION_SCHEMA),
        spark.createDataFrame(customers, CUSTOMER_SCHEMA),
        {d: datetime.combine(d + timedelta(days=1), time(), timezone.utc) for d in as_of},
    )
    return {(r["as_of_date"], r["customer_id"]): r.asDict() for r in frame.collect()}


def test_windows_include_exactly_7_30_and_90_days(spark):
    purchases = [
        (ago(0), 1, 1, "placed", 1.0),  # the as-of day itself counts
        (ago(6), 2, 1, "placed", 10.0),  # 7th day back: inside 7d
        (ago(7), 3, 1, "placed", 100.0),  # 8th day back: 30d only
        (ago(29), 4, 1, "placed", 1000.0),  # inside 30d
        (ago(30), 5, 1, "placed", 10000.0),  # 90d only
        (ago(89), 6, 1, "placed", 100000.0),  # inside 90d
        (ago(90), 7, 1, "placed", 1000000.0),  # outside every window
        (AS_OF + timedelta(days=1), 8, 1, "placed", 5.0),  # the future: never
    ]
    row = features(spark, purchases)[(AS_OF, 1)]
    assert (row["frequency_7d"], row["frequency_30d"], row["frequency_90d"]) == (2, 4, 6)
    assert row["monetary_7d"] == pytest.approx(11.0)
    assert row["monetary_30d"] == pytest.approx(1111.0)
    assert row["monetary_90d"] == pytest.approx(111111.0)
    assert row["recency_days"] == 0


def test_cancelled_and_refunded_orders_do_not_count(spark):
    purchases = [
        (ago(1), 1, 1, "refunded", 50.0),
        (ago(2), 2, 1, "cancelled", 50.0),
        (ago(3), 3, 1, "placed", 20.0),
    ]
    row = features(spark, purchases)[(AS_OF, 1)]
    assert row["frequency_7d"] == 1
    assert row["monetary_7d"] == pytest.approx(20.0)
    assert row["recency_days"] == 3


def test_customers_without_activity_get_zeros_and_no_recency(spark):
    rows = features(spark, [(ago(1), 1, 1, "placed", 5.0)])
    quiet = rows[(AS_OF, 2)]
    assert quiet["frequency_90d"] == 0 and quiet["monetary_90d"] == 0.0
    assert quiet["recency_days"] is None
    assert quiet["has_valid_email"] is False
    assert rows[(AS_OF, 1)]["has_valid_email"] is True
    assert quiet["tenure_days"] == 29


def test_interactions_over_30_days(spark):
    interactions = [
        (ago(0), 1, "support_ticket"),
        (ago(29), 1, "newsletter_click"),
        (ago(30), 1, "support_ticket"),  # outside
    ]
    row = features(spark, [], interactions)[(AS_OF, 1)]
    assert (row["interactions_30d"], row["support_tickets_30d"]) == (2, 1)


def test_several_as_of_days_in_one_job(spark):
    first, second = ago(1), AS_OF
    rows = features(spark, [(AS_OF, 1, 1, "placed", 9.0)], as_of=(first, second))
    assert rows[(first, 1)]["frequency_7d"] == 0  # the purchase is after `first`
    assert rows[(second, 1)]["frequency_7d"] == 1
