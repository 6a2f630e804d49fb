"""Property-based tests: arbitrary rows, including every kind of garbage a source can send,
never crash the validation and labelling functions and never lose or invent a row."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyspark.sql import functions as F

from shopsmart_assets.sources.extract import (
    ORDERS,
    SourceSchemaError,
    coerce_to_contract,
    read_value,
)
from shopsmart_assets.transforms.features import FEATURE_COLUMNS
from shopsmart_assets.transforms.purchases import (
    PURCHASE_COLUMNS,
    REASONS,
    purchase_lines,
    split_valid,
)
from shopsmart_assets.transforms.training import label_examples
from shopsmart_assets_tests.harness import draw_examples

DAY = date(2026, 2, 3)
T = datetime(2026, 2, 3, 12)
ids = st.one_of(st.none(), st.integers(min_value=-3, max_value=6))
money = st.one_of(
    st.none(),
    st.decimals(min_value=-1000, max_value=100000, places=2, allow_nan=False).map(float),
    st.sampled_from([1e300, float("inf"), float("-inf"), float("nan"), 999_999.99]),
)
quantities = st.one_of(
    st.none(), st.integers(-2, 5), st.sampled_from([10**15, 2**63 - 1, 100_000, 100_001])
)
unparsed = st.one_of(st.none(), st.sampled_from(['{"unit_price": "abc"}', '{"quantity": "x"}']))
currency = st.one_of(st.none(), st.sampled_from(["USD", "EUR", "GBP", "CAD", "XXX", "usd", ""]))
status = st.one_of(st.none(), st.sampled_from(["placed", "refunded", "cancelled", "??"]))

orders = st.lists(
    st.tuples(ids, ids, currency, status, st.integers(min_value=0, max_value=5), unparsed),
    max_size=12,
)
items = st.lists(
    st.tuples(ids, st.one_of(st.none(), st.integers(1, 3)), ids, quantities, money, unparsed),
    max_size=25,
)
customers = st.lists(ids, max_size=6)

ORDER_SCHEMA = (
    "date date, hour string, order_id long, customer_id long, ordered_at timestamp,"
    " status string, currency string, channel string, updated_at timestamp,"
    " unparsed_values string"
)
ITEM_SCHEMA = (
    "date date, hour string, order_id long, line_no long, product_id long, quantity long,"
    " unit_price double, unparsed_values string"
)


EXAMPLES = 30


@pytest.mark.spark
def test_validation_keeps_every_line_exactly_once(spark):
    """Hypothesis draws the examples first (no Spark), then one Spark job validates them all:
    each example is a day of its own (the transformation joins, deduplicates and looks up
    customers within a day), and every property is checked per example, on that day's rows."""
    examples = draw_examples(
        EXAMPLES,
        lambda orders, items, customers: (orders, items, customers),
        orders=orders,
        items=items,
        customers=customers,
    )
    assert len(examples) >= EXAMPLES // 2  # hypothesis may stop early on a small space only
    day_of = {k: DAY + timedelta(days=k) for k in range(len(examples))}
    order_rows, item_rows, customer_rows = [], [], []
    for k, (example_orders, example_items, example_customers) in enumerate(examples):
        day = day_of[k]
        at = datetime.combine(day, T.time())
        order_rows += [
            (day, "1200+0000", oid, cid, at, st_, cur, "web", at.replace(minute=minute), bad)
            for oid, cid, cur, st_, minute, bad in example_orders
        ]
        item_rows += [(day, "1200+0000", *row) for row in example_items]
        customer_rows += [(day, c) for c in example_customers]
    lines = purchase_lines(
        spark.createDataFrame(order_rows, ORDER_SCHEMA),
        spark.createDataFrame(item_rows, ITEM_SCHEMA),
        spark.createDataFrame(customer_rows, "date date, customer_id long"),
    )
    # One job: every line of both outputs, tagged with the output it came from.
    valid, quarantined = split_valid(lines)
    both = valid.select(*PURCHASE_COLUMNS, F.lit(None).cast("string").alias("reason")).withColumn(
        "_valid", F.lit(True)
    )
    both = both.unionByName(
        quarantined.select(*PURCHASE_COLUMNS, "reason").withColumn("_valid", F.lit(False))
    )
    by_day: dict[date, tuple[list, list]] = {day: ([], []) for day in day_of.values()}
    for row in both.collect():
        assert row["date"] in by_day, row  # a line on no example's day: invented
        by_day[row["date"]][0 if row["_valid"] else 1].append(row)
    for k, (example_orders, example_items, example_customers) in enumerate(examples):
        valid_rows, bad_rows = by_day[day_of[k]]
        example = f"example {k}: orders={example_orders!r} items={example_items!r} " + (
            f"customers={example_customers!r}"
        )
        # nothing lost, nothing invented
        assert len(valid_rows) + len(bad_rows) == len(example_items), example
        assert {r["reason"] for r in bad_rows} <= set(REASONS), example
        keys = [(r["order_id"], r["line_no"]) for r in valid_rows]
        assert len(keys) == len(set(keys)), example  # one copy of each valid line
        for row in valid_rows:
            assert 0 < row["quantity"] <= 100_000 and 0 < row["unit_price"] <= 1_000_000, example
            assert row["amount_usd"] is not None and 0 <= row["amount_usd"] <= 10_000_000, example
            assert row["customer_id"] in example_customers, example


@settings(max_examples=200, deadline=None)
@given(
    customer_ids=st.lists(st.integers(-5, 50), max_size=40, unique=True),
    buyers=st.lists(st.tuples(st.one_of(st.none(), st.integers(-5, 60)), status), max_size=60),
)
def test_labels_never_lose_or_invent_an_example(customer_ids, buyers):
    features = pd.DataFrame(
        [
            {c: 0 for c in FEATURE_COLUMNS} | {"customer_id": cid, "as_of_date": DAY}
            for cid in customer_ids
        ],
        columns=list(FEATURE_COLUMNS),
    )
    later = pd.DataFrame(buyers, columns=["customer_id", "status"])
    examples = label_examples(features, later)
    assert list(examples["customer_id"]) == customer_ids
    assert set(examples["label"]) <= {0, 1}
    stood = {c for c, s in buyers if c is not None and s not in ("cancelled", "refunded")}
    assert {c for c, y in zip(examples["customer_id"], examples["label"], strict=True) if y} == (
        stood & set(customer_ids)
    )


# What a drifting or sloppy source can put in a column: numbers, text, dates, blanks, NULLs.
cell = st.one_of(
    st.none(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)),
)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(cell, max_size=15),
    column=st.sampled_from(list(ORDERS.source_schema.names)),
)
def test_extraction_keeps_every_row_and_every_value(values, column):
    """Arbitrary values in one column of an otherwise valid chunk of orders: every row lands,
    each value either read as the column's type or kept as text in `unparsed_values`; only a
    column most of whose values do not read stops the extraction, naming source, table, column
    and partition."""
    valid = (1, 2, T, "placed", "USD", "web", T)
    frame = pd.DataFrame(
        [dict(zip(ORDERS.source_schema.names, valid, strict=True)) for _ in values],
        columns=ORDERS.source_schema.names,
    )
    frame[column] = pd.Series(values, dtype=object)
    coerced = coerce_to_contract(frame, ORDERS, "2026-02-03-12:00")
    table = coerced.table
    assert table.num_rows == len(values)  # nothing lost, nothing invented
    assert table.schema == ORDERS.schema
    kept = 0
    for value, typed, text in zip(
        values,
        table.column(column).to_pylist(),
        table.column("unparsed_values").to_pylist(),
        strict=True,
    ):
        if text is None:  # read: null stays null, anything else has a value
            assert (typed is None) == (value is None or value != value)
        else:  # not read: null, with the source value kept
            assert typed is None and list(json.loads(text)) == [column]
            kept += 1
    assert coerced.unparsed[column] == kept
    # the same decision, value by value, as the documented reader
    for value, text in zip(values, table.column("unparsed_values").to_pylist(), strict=True):
        try:
            read_value(value, ORDERS.schema.field(column).type)
            readable = True
        except (TypeError, ValueError, OverflowError, ArithmeticError):
            readable = False
        if not readable:
            assert text is not None


def test_a_drifted_column_is_named():
    frame = pd.DataFrame({name: ["x"] * 20 for name in ORDERS.source_schema.names})
    from shopsmart_assets.sources.extract import ExtractReport, check_drift

    report = ExtractReport(rows=20)
    report.unparsed.update(coerce_to_contract(frame, ORDERS, "2026-02-03-12:00").unparsed)
    try:
        check_drift(report, ORDERS, "2026-02-03-12:00")
    except SourceSchemaError as error:
        for part in ("source 'orders'", "table 'orders'", "column 'order_id'", "2026-02-03-12:00"):
            assert part in str(error)
    else:
        raise AssertionError("a column of which no value reads is drift")
