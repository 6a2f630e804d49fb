"""Correct on every calendar day and robust to any single row, through the whole chain.

On Lord Howe Island (Australia/Lord_Howe), whose clocks move by 30 minutes, the three days
around each shift run the hourly extraction and then the daily chain: every hour starts on
the local hour and every day reconciles with the source.

In America/New_York: the fall-back day (25 hours, two of them at 01:00) and the spring-forward
day (23 hours) run through every asset, and every order of every hour lands exactly once
(reconciled against the source with SQL and zoneinfo alone, reconcile.py). On the fall-back
day the source also holds one malformed or absurd value of each kind: each such line is
quarantined with its reason, its source text kept, and the rest of the day is published. An
hour that goes missing from the lake afterwards fails the source reconciliation.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from shopsmart_assets.defs.lake.assets import RECONCILES
from shopsmart_assets.lake.delta import DeltaLakeTable
from shopsmart_assets.partitions import build_partitions
from shopsmart_assets_tests import reconcile
from shopsmart_assets_tests.harness import DAILY, Platform, in_memory_instance, platform_at

pytestmark = [pytest.mark.spark, pytest.mark.e2e]

ZONE = "America/New_York"
LORD_HOWE = "Australia/Lord_Howe"
# +11:00 → +10:30 at 02:00 on 2026-04-05 (a day of 24½ hours), +10:30 → +11:00 at 02:00 on
# 2026-10-04 (23½ hours)
LORD_HOWE_SHIFTS = {"half_hour_back": date(2026, 4, 5), "half_hour_forward": date(2026, 10, 4)}
FALL_BACK, SPRING_FORWARD = date(2026, 11, 1), date(2026, 3, 8)
# One bad value of each kind, set on a line of an order placed in the repeated 01:00 hour of
# the fall-back night (05:00-06:00 UTC is 01:00 EDT, 06:00-07:00 UTC is 01:00 EST).
BAD_LINES = {
    "unparseable_unit_price": ("order_items", "unit_price", "'abc'"),
    "unparseable_quantity": ("order_items", "quantity", "2.5"),
    "quantity_out_of_range": ("order_items", "quantity", "1000000000000000"),
    "unit_price_out_of_range": ("order_items", "unit_price", "1e300"),
    "unparseable_customer_id": ("orders", "customer_id", "'C-42'"),
}


def lake_rows(p: Platform, sql: str) -> list[tuple]:
    return reconcile.lake_sql(p.root / "lake", sql)


def spoil(p: Platform) -> dict[str, tuple[int, int]]:
    """Write one bad value of each kind into the orders source, each on its own order of the
    fall-back night; returns the (order_id, line_no) of each reason."""
    spoiled = {}
    with sqlite3.connect(p.root / "orders.db") as db:
        orders = [
            r[0]
            for r in db.execute(
                "SELECT DISTINCT o.order_id FROM orders o WHERE o.ordered_at >= "
                "'2026-11-01 05:00:00' AND o.ordered_at < '2026-11-01 07:00:00' AND "
                "o.currency IN ('USD', 'EUR', 'GBP', 'CAD') AND o.customer_id < 900000000 "
                "ORDER BY o.order_id"
            )
        ]
        assert len(orders) >= len(BAD_LINES)
        for (reason, (table, column, value)), order_id in zip(
            BAD_LINES.items(), orders, strict=False
        ):
            if table == "orders":
                db.execute(f"UPDATE orders SET {column} = {value} WHERE order_id = ?", (order_id,))
            else:
                db.execute(
                    f"UPDATE order_items SET {column} = {value} WHERE order_id = ? AND line_no = 1",
                    (order_id,),
                )
            spoiled[reason] = (order_id, 1)
    return spoiled


@contextmanager
def chain_through(root: Path, day: date, spoil_sources: bool = False):
    """The day before and `day` in New York through the whole chain, on their own sources,
    lake and instance (partitions from the day before)."""
    with in_memory_instance() as instance:
        first = day - date.resolution
        p = platform_at(root, instance, build_partitions(str(first), ZONE))
        p.generate(first, days=2, orders_per_day=150)
        spoiled = spoil(p) if spoil_sources else {}
        p.materialize_days(first, day)
        yield p, spoiled


@pytest.fixture(scope="module")
def fall_back(tmp_path_factory, spark) -> Iterator[tuple[Platform, dict]]:
    with chain_through(tmp_path_factory.mktemp("fall-back"), FALL_BACK, True) as found:
        yield found


@pytest.fixture(scope="module")
def spring_forward(tmp_path_factory, spark) -> Iterator[Platform]:
    with chain_through(tmp_path_factory.mktemp("spring-forward"), SPRING_FORWARD) as (p, _):
        yield p


def test_the_fall_back_day_lands_every_order_of_its_25_hours_exactly_once(fall_back):
    p, _ = fall_back
    hours = sorted(d.name for d in (p.root / "lake/raw/orders" / f"date={FALL_BACK}").iterdir())
    assert len(hours) == 25 and {"hour=0100-0400", "hour=0100-0500"} <= set(hours)
    for day in (FALL_BACK - date.resolution, FALL_BACK):
        lines = reconcile.assert_lake_reconciles(
            p.root / "lake", p.root / "crm.db", p.root / "orders.db", day, tz=ZONE
        )
        assert lines > 100
    # the second 01:00 hour really had orders, and they are in the curated day
    [(repeated,)] = lake_rows(
        p,
        f"SELECT count(*) FROM raw__orders WHERE date = '{FALL_BACK}' AND hour = '0100-0500'",
    )
    assert repeated > 0


def test_the_spring_forward_day_has_23_hours_and_lands_every_order(spring_forward):
    p = spring_forward
    hours = sorted(
        d.name for d in (p.root / "lake/raw/orders" / f"date={SPRING_FORWARD}").iterdir()
    )
    assert len(hours) == 23 and "hour=0200-0500" not in hours
    for day in (SPRING_FORWARD - date.resolution, SPRING_FORWARD):
        reconcile.assert_lake_reconciles(
            p.root / "lake", p.root / "crm.db", p.root / "orders.db", day, tz=ZONE
        )


@pytest.mark.parametrize("which", ["fall_back", "spring_forward"])
def test_every_asset_ran_through_both_days(which, request):
    found = request.getfixturevalue(which)
    p = found[0] if isinstance(found, tuple) else found
    day = FALL_BACK if which == "fall_back" else SPRING_FORWARD
    for key in DAILY:
        assert p.instance.get_materialized_partitions(dg.AssetKey.from_user_string(key)) == {
            str(day - date.resolution),
            str(day),
        }, key
    [(customers,)] = lake_rows(
        p, f"SELECT count(*) FROM (SELECT * FROM features__customer_features WHERE date = '{day}')"
    )
    assert customers > 100


def test_each_bad_value_is_quarantined_with_its_reason_and_kept_as_text(fall_back):
    p, spoiled = fall_back
    quarantined = {
        (order_id, line_no): (reason, unparsed)
        for order_id, line_no, reason, unparsed in lake_rows(
            p,
            "SELECT order_id, line_no, reason, unparsed_values FROM quarantine__purchases "
            f"WHERE date = '{FALL_BACK}'",
        )
    }
    for reason, line in spoiled.items():
        assert quarantined[line][0] == reason, (reason, line, quarantined.get(line))
    assert json.loads(quarantined[spoiled["unparseable_unit_price"]][1]) == {"unit_price": "abc"}
    assert json.loads(quarantined[spoiled["unparseable_quantity"]][1]) == {"quantity": "2.5"}
    # the raw zone keeps the source value as it was
    [(kept,)] = lake_rows(
        p,
        "SELECT unparsed_values FROM (SELECT * FROM raw__order_items WHERE date = "
        f"'{FALL_BACK}') "
        f"WHERE order_id = {spoiled['unparseable_unit_price'][0]} AND line_no = 1",
    )
    assert json.loads(kept) == {"unit_price": "abc"}
    # the run tells what it kept as text, and the day's metadata counts it
    record = p.instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(["lake", "purchases"]), asset_partitions=[str(FALL_BACK)]
        ),
        limit=1,
    ).records[0]
    reasons = record.asset_materialization.metadata["quarantine_reasons"].value
    for reason in spoiled:
        assert reasons[reason] >= 1, reasons


def test_an_hour_missing_from_the_lake_fails_the_source_check_and_publishes_nothing(fall_back):
    """The old failure mode: the second 01:00 hour overwritten by an empty one. The raw zone
    no longer matches the source, so the blocking check fails and the day stays as it was."""
    p, _ = fall_back
    table = DeltaLakeTable(p.root / "lake/raw/orders", ("date", "hour"))
    repeated, first = f"date={FALL_BACK}/hour=0100-0500", f"date={FALL_BACK}/hour=0000-0400"
    held = table.files()

    def commit_copies(subpath: str, files: list[str], into: Path) -> None:
        into.mkdir()
        table.commit({subpath: [shutil.copy(table.path / f, into / Path(f).name) for f in files]})

    # the second 01:00 hour replaced by the first hour of the day, as the old bug did
    commit_copies(repeated, held[first], p.root / "wrong-hour")
    before = lake_rows(p, f"SELECT count(*) FROM curated__purchases WHERE date = '{FALL_BACK}'")
    try:
        result = p.materialize(["lake/purchases"], str(FALL_BACK), raise_on_error=False)
        assert not result.success
        [check] = [e for e in result.get_asset_check_evaluations() if e.check_name == RECONCILES]
        assert not check.passed
        difference = check.metadata["first_difference"].value
        assert f"raw/orders {FALL_BACK}-01:00-0500: source" in difference, difference
        after = lake_rows(p, f"SELECT count(*) FROM curated__purchases WHERE date = '{FALL_BACK}'")
        assert after == before
    finally:
        commit_copies(repeated, held[repeated], p.root / "right-hour")


@pytest.fixture(scope="module", params=sorted(LORD_HOWE_SHIFTS))
def lord_howe(request, tmp_path_factory, spark) -> Iterator[tuple[Platform, list[date]]]:
    """The day before a Lord Howe shift, the shift and the day after, on their own sources,
    lake and instance: the hourly extraction, then the daily chain, as users run them."""
    shift = LORD_HOWE_SHIFTS[request.param]
    days = [shift - date.resolution, shift, shift + date.resolution]
    with in_memory_instance() as instance:
        root = tmp_path_factory.mktemp(request.param)
        p = platform_at(root, instance, build_partitions(str(days[0]), LORD_HOWE))
        p.generate(days[0], days=3, orders_per_day=120)
        p.materialize_days(days[0], days[-1])
        yield p, days


def test_every_day_around_a_half_hour_shift_is_built_from_hours_on_the_hour(lord_howe):
    p, days = lord_howe
    for day in days:
        hours = sorted(d.name for d in (p.root / "lake/raw/orders" / f"date={day}").iterdir())
        assert len(hours) in (23, 24) and all(h[7:9] == "00" for h in hours), (day, hours)
        assert (
            reconcile.assert_lake_reconciles(
                p.root / "lake", p.root / "crm.db", p.root / "orders.db", day, tz=LORD_HOWE
            )
            > 50
        )
        for key in DAILY:
            assert str(day) in p.instance.get_materialized_partitions(
                dg.AssetKey.from_user_string(key)
            ), (key, day)
