"""Purchases transformation on small DataFrames: dedup, currency, validation."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from shopsmart_assets.transforms.purchases import (
    MAX_QUANTITY,
    MAX_UNIT_PRICE,
    REASONS,
    purchase_lines,
    split_valid,
)

pytestmark = pytest.mark.spark

D = date(2026, 1, 5)
T0 = datetime(2026, 1, 5, 10, 0)
T1 = datetime(2026, 1, 7, 9, 0)
ORDER_SCHEMA = (
    "date date, hour string, order_id long, customer_id long, ordered_at timestamp,"
    " status string, currency string, channel string, updated_at timestamp,"
    " unparsed_values string"
)
ITEM_SCHEMA = (
    "date date, hour string, order_id long, line_no long, product_id long, quantity long,"
    " unit_price double, unparsed_values string"
)
CUSTOMER_SCHEMA = "date date, customer_id long"
HOUR = "1000+0000"


def order(order_id, customer_id=1, currency="USD", status="placed", updated_at=T0, unparsed=None):
    return (D, HOUR, order_id, customer_id, T0, status, currency, "web", updated_at, unparsed)


def item(order_id, line_no=1, product_id=100, quantity=1, unit_price=10.0, unparsed=None):
    return (D, HOUR, order_id, line_no, product_id, quantity, unit_price, unparsed)


def run(spark, orders, items, customers=((D, 1), (D, 2))):
    lines = purchase_lines(
        spark.createDataFrame(orders, ORDER_SCHEMA),
        spark.createDataFrame(items, ITEM_SCHEMA),
        spark.createDataFrame(list(customers), CUSTOMER_SCHEMA),
    )
    return {(r["order_id"], r["line_no"], r["reason"]): r for r in lines.collect()}, lines


def test_latest_order_version_wins_and_duplicate_lines_are_quarantined(spark):
    orders = [
        order(1),
        order(1),  # delivered twice
        order(1, status="refunded", updated_at=T1),  # late update of the same order
    ]
    items = [item(1, 1), item(1, 1), item(1, 2, unit_price=5.0)]
    rows, lines = run(spark, orders, items)
    valid, quarantined = split_valid(lines)
    assert valid.count() == 2
    assert {r["status"] for r in valid.collect()} == {"refunded"}
    assert [r["reason"] for r in quarantined.collect()] == ["duplicate"]
    # nothing lost, nothing invented
    assert valid.count() + quarantined.count() == len(items)


def test_amounts_are_converted_to_usd(spark):
    orders = [order(1, currency="EUR"), order(2, currency="GBP", customer_id=2)]
    items = [item(1, quantity=3, unit_price=10.0), item(2, quantity=1, unit_price=100.0)]
    rows, _ = run(spark, orders, items)
    assert rows[(1, 1, None)]["amount_usd"] == pytest.approx(3 * 10.0 * 1.08)
    assert rows[(2, 1, None)]["amount_usd"] == pytest.approx(127.0)
    assert rows[(1, 1, None)]["usd_per_unit"] == pytest.approx(1.08)


def test_amounts_round_half_up_to_the_cent_exactly(spark):
    # 14.50 CAD x 0.73 = 10.585 exactly, but 10.58499... in binary floating point
    rows, _ = run(spark, [order(1, currency="CAD")], [item(1, quantity=1, unit_price=14.5)])
    assert rows[(1, 1, None)]["amount_usd"] == 10.59


@pytest.mark.parametrize(
    ("the_order", "the_item", "reason"),
    [
        (order(1, customer_id=None), item(1), "null_customer_id"),
        (order(1), item(1, product_id=None), "null_product_id"),
        (order(1, customer_id=999), item(1), "unknown_customer"),
        (order(1, currency="BTC"), item(1), "unknown_currency"),
        (order(1), item(1, quantity=0), "non_positive_quantity"),
        (order(1), item(1, unit_price=0.0), "non_positive_price"),
        (order(1), item(1, unit_price=-4.5), "non_positive_price"),
        (order(1), item(1, unit_price=None), "non_positive_price"),
        (order(2), item(1), "missing_order"),
        # absurd values: quarantined, never an overflow that fails the day
        (order(1), item(1, quantity=10**15), "quantity_out_of_range"),
        (order(1), item(1, quantity=MAX_QUANTITY + 1), "quantity_out_of_range"),
        (order(1), item(1, unit_price=1e300), "unit_price_out_of_range"),
        (order(1), item(1, unit_price=float("inf")), "unit_price_out_of_range"),
        (order(1), item(1, unit_price=float("nan")), "unit_price_out_of_range"),
        (
            order(1, currency="GBP"),
            item(1, quantity=MAX_QUANTITY, unit_price=MAX_UNIT_PRICE),
            "amount_out_of_range",
        ),
        # values the source held unreadably (kept as text by the extraction)
        (
            order(1),
            item(1, unit_price=None, unparsed='{"unit_price": "abc"}'),
            "unparseable_unit_price",
        ),
        (
            order(1, customer_id=None, unparsed='{"customer_id": "C-9"}'),
            item(1),
            "unparseable_customer_id",
        ),
        (
            order(1, unparsed='{"ordered_at": "soon"}'),
            item(1, unparsed='{"quantity": "2.5"}'),
            "unparseable_quantity",
        ),
    ],
)
def test_each_invalid_line_is_quarantined_with_its_reason(spark, the_order, the_item, reason):
    rows, lines = run(spark, [the_order], [the_item])
    assert reason in REASONS
    assert list(rows) == [(1, 1, reason)]


def test_first_failing_rule_is_the_reason(spark):
    # A duplicated line of an order in an unknown currency: duplicate comes first.
    rows, _ = run(spark, [order(1, currency="XXX")], [item(1), item(1)])
    assert sorted(k[2] for k in rows) == ["duplicate", "unknown_currency"]


def test_customer_must_be_known_on_the_same_day(spark):
    # Customer 2 is in the snapshot of another day only.
    rows, _ = run(
        spark, [order(1, customer_id=2)], [item(1)], customers=[(D, 1), (date(2026, 1, 6), 2)]
    )
    assert list(rows) == [(1, 1, "unknown_customer")]


def test_quarantine_keeps_the_unreadable_source_value(spark):
    rows, lines = run(
        spark, [order(1)], [item(1, unit_price=None, unparsed='{"unit_price": "abc"}')]
    )
    _, quarantined = split_valid(lines)
    [row] = quarantined.collect()
    assert row["reason"] == "unparseable_unit_price"
    assert row["unparsed_values"] == '{"unit_price": "abc"}'
    assert row["amount_usd"] is None


def test_customers_looked_up_by_broadcast_or_by_shuffle_give_the_same_lines(spark):
    # The CRM without a primary key (customer 1 twice), a customer it does not know (3), one
    # it knows on another day only (2 on D+1), a null customer and a customer nobody ordered
    # as (4): the broadcast lookup filters the snapshot to the ordering customers first.
    orders = [
        order(1, customer_id=1),
        order(2, customer_id=2),
        order(3, customer_id=3),
        order(4, customer_id=None),
        order(5, customer_id=1, currency="EUR"),
    ]
    items = [item(o, line) for o in range(1, 7) for line in (1, 2)]
    customers = [(D, 1), (D, 1), (date(2026, 1, 6), 2), (D, 4), (D, None)]
    frames = (
        spark.createDataFrame(orders, ORDER_SCHEMA),
        spark.createDataFrame(items, ITEM_SCHEMA),
        spark.createDataFrame(customers, CUSTOMER_SCHEMA),
    )
    by_broadcast = purchase_lines(*frames, broadcast=True).collect()
    by_shuffle = purchase_lines(*frames, broadcast=False).collect()
    assert sorted(by_broadcast) == sorted(by_shuffle)
    reasons = {(r["order_id"], r["line_no"]): r["reason"] for r in by_broadcast}
    assert len(by_broadcast) == len(items)  # no line doubled by the CRM's duplicate
    assert reasons[(1, 1)] is None and reasons[(5, 2)] is None
    assert reasons[(2, 1)] == reasons[(3, 1)] == "unknown_customer"
    assert reasons[(4, 1)] == "null_customer_id"
    assert reasons[(6, 1)] == "missing_order"
