"""The demo source generator: deterministic, appendable, realistically dirty."""

from __future__ import annotations

import math
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from shopsmart_assets.demo.cli import main as demo_main
from shopsmart_assets.demo.generator import (
    DemoConfig,
    create_sources,
    generate,
    last_generated_hour,
)
from shopsmart_assets.demo.live import LiveSource
from shopsmart_assets.source_tables import orders

TABLES = {
    "crm": ["customers", "interactions"],
    "orders": ["orders", "order_items", "products"],
}


def dump(directory: Path) -> dict[str, list[tuple]]:
    out = {}
    for db, tables in TABLES.items():
        with sqlite3.connect(directory / f"{db}.db") as c:
            for table in tables:
                out[table] = sorted(c.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
    return out


def run(directory: Path, *args: str) -> None:
    assert (
        demo_main(
            [
                "--crm-url",
                f"sqlite:///{directory / 'crm.db'}",
                "--orders-url",
                f"sqlite:///{directory / 'orders.db'}",
                "--start-date",
                "2026-01-01",
                "--orders-per-day",
                "300",
                *args,
            ]
        )
        == 0
    )


def test_same_seed_same_data_and_append_equals_one_go(tmp_path):
    run(tmp_path / "a", "--days", "4")
    run(tmp_path / "b", "--days", "4")
    run(tmp_path / "c", "--days", "2")
    run(tmp_path / "c", "--append", "--hours", "48")
    a, b, c = dump(tmp_path / "a"), dump(tmp_path / "b"), dump(tmp_path / "c")
    assert a == b
    assert a == c
    run(tmp_path / "d", "--days", "4", "--seed", "8")
    assert dump(tmp_path / "d")["orders"] != a["orders"]


def test_generating_the_same_hours_again_adds_nothing(tmp_path):
    run(tmp_path, "--days", "1")
    before = dump(tmp_path)
    run(tmp_path, "--days", "1")
    assert dump(tmp_path) == before


@pytest.fixture(scope="module")
def month(tmp_path_factory) -> sqlite3.Connection:
    directory = tmp_path_factory.mktemp("month")
    run(directory, "--days", "28")
    connection = sqlite3.connect(directory / "orders.db")
    connection.execute(f"ATTACH '{directory / 'crm.db'}' AS crm")
    return connection


def scalar(connection: sqlite3.Connection, sql: str) -> float:
    return connection.execute(sql).fetchone()[0]


def test_volume_and_shape(month):
    orders = scalar(month, "SELECT count(DISTINCT order_id) FROM orders")
    assert 28 * 300 * 0.9 < orders < 28 * 300 * 1.1
    # evenings are busier than nights, weekends busier than Mondays
    evening = scalar(month, "SELECT count(*) FROM orders WHERE strftime('%H', ordered_at) = '20'")
    night = scalar(month, "SELECT count(*) FROM orders WHERE strftime('%H', ordered_at) = '04'")
    assert evening > 3 * night
    # a few customers buy much more than the median one
    top = scalar(month, "SELECT max(n) FROM (SELECT count(*) n FROM orders GROUP BY customer_id)")
    assert top >= 10
    currencies = {r[0] for r in month.execute("SELECT DISTINCT currency FROM orders")}
    assert {"USD", "EUR", "GBP", "CAD"} <= currencies


@pytest.mark.parametrize(
    ("sql", "rate"),
    [
        (
            "SELECT 1.0 * (count(*) - count(DISTINCT order_id)) / count(DISTINCT order_id) "
            "FROM orders",
            0.01,
        ),
        ("SELECT avg(status IN ('refunded', 'cancelled')) FROM orders", 0.03),
        ("SELECT avg(currency NOT IN ('USD', 'EUR', 'GBP', 'CAD')) FROM orders", 0.005),
        ("SELECT avg(customer_id >= 900000000) FROM orders", 0.005),
        ("SELECT avg(customer_id IS NULL) FROM orders", 0.002),
        ("SELECT avg(unit_price <= 0) FROM order_items", 0.005),
        ("SELECT avg(product_id IS NULL) FROM order_items", 0.002),
        (
            "SELECT avg(email NOT LIKE '%_@_%._%' OR email LIKE '%@%@%' OR email LIKE '% %') "
            "FROM crm.customers",
            0.02,
        ),
    ],
)
def test_dirty_rows_at_known_rates(month, sql, rate):
    observed = scalar(month, sql)
    assert rate * 0.4 < observed < rate * 2.0, f"{sql}: {observed:.4f} vs {rate}"


def test_late_updates_change_orders_after_their_day(month):
    late = month.execute(
        "SELECT ordered_at, updated_at FROM orders WHERE status IN ('refunded','cancelled')"
    ).fetchall()
    assert late
    for ordered_at, updated_at in late:
        assert datetime.fromisoformat(updated_at) > datetime.fromisoformat(ordered_at)


def test_timezone_moves_trading_hours(tmp_path):
    run(tmp_path, "--days", "7", "--timezone", "America/New_York")
    with sqlite3.connect(tmp_path / "orders.db") as c:
        first = datetime.fromisoformat(
            c.execute("SELECT min(ordered_at) FROM orders").fetchone()[0]
        )
    # Days start at midnight New York time, 05:00 UTC.
    assert first >= datetime(2026, 1, 1, 5, tzinfo=ZoneInfo("UTC")).replace(tzinfo=None)


@pytest.mark.parametrize(
    ("start", "zone", "hours"),
    [
        # 2026-03-06 .. 03-09 in New York: the 8th has 23 hours (the example of issue 9)
        ("2026-03-06", "America/New_York", 24 + 24 + 23 + 24),
        # 2026-10-31 .. 11-03: the 1st has 25
        ("2026-10-31", "America/New_York", 24 + 25 + 24 + 24),
        # Lord Howe Island moves its clocks by half an hour: a 24.5-hour day
        ("2026-04-04", "Australia/Lord_Howe", 24 + 24 + 24 + 24),
        # Kathmandu is 5:45 ahead of UTC: local days start at 18:15 UTC
        ("2026-04-04", "Asia/Kathmandu", 24 * 4),
    ],
)
def test_generator_covers_dst_days_hour_by_hour(tmp_path, start, zone, hours):
    """Whole local days across a DST change: every real hour once, none twice, none skipped
    (the spring-forward night used to crash on a duplicate hour)."""
    run_at = [
        "--crm-url",
        f"sqlite:///{tmp_path / 'crm.db'}",
        "--orders-url",
        f"sqlite:///{tmp_path / 'orders.db'}",
        "--start-date",
        start,
        "--days",
        "4",
        "--orders-per-day",
        "200",
        "--timezone",
        zone,
    ]
    assert demo_main(run_at) == 0
    with sqlite3.connect(tmp_path / "orders.db") as c:
        generated = [
            datetime.fromisoformat(r[0]).replace(tzinfo=ZoneInfo("UTC"))
            for r in c.execute("SELECT hour_start FROM demo_generated_hours ORDER BY 1")
        ]
        first_order, last_order = c.execute(
            "SELECT min(ordered_at), max(ordered_at) FROM orders"
        ).fetchone()
    local = ZoneInfo(zone)
    day0 = datetime.fromisoformat(start).replace(tzinfo=local)
    day4 = datetime.fromisoformat(start).replace(tzinfo=local) + timedelta(days=4)
    span = day4.astimezone(ZoneInfo("UTC")) - day0.astimezone(ZoneInfo("UTC"))
    assert len(generated) == len(set(generated)) == math.ceil(span.total_seconds() / 3600)
    if zone != "Australia/Lord_Howe":
        assert len(generated) == hours
    # consecutive UTC hours from the first local midnight, nothing outside the four days
    assert generated[0] == day0.astimezone(ZoneInfo("UTC"))
    assert all(b - a == timedelta(hours=1) for a, b in zip(generated, generated[1:], strict=False))
    assert datetime.fromisoformat(first_order).replace(tzinfo=ZoneInfo("UTC")) >= generated[0]
    assert datetime.fromisoformat(last_order).replace(tzinfo=ZoneInfo("UTC")) < day4.astimezone(
        ZoneInfo("UTC")
    ) + timedelta(hours=1)


class FakeClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def engines(directory: Path) -> tuple[sa.Engine, sa.Engine]:
    directory.mkdir(parents=True, exist_ok=True)
    return (
        sa.create_engine(f"sqlite:///{directory / 'crm.db'}"),
        sa.create_engine(f"sqlite:///{directory / 'orders.db'}"),
    )


def test_live_source_writes_each_moment_as_it_passes_and_equals_the_batch(tmp_path):
    """`shopsmart-demo --live`: rows appear when the clock passes their moment, never
    before; an interrupted hour is taken back and drawn again; the result is the batch's."""
    config = DemoConfig(seed=3, orders_per_day=4000, timezone="Europe/Berlin")
    start = datetime(2026, 3, 28, 20, tzinfo=timezone.utc)  # over Berlin's spring-forward
    batch = engines(tmp_path / "batch")
    create_sources(*batch)
    generate(*batch, start, 6, config)

    live = engines(tmp_path / "live")
    create_sources(*live)
    generate(*live, start, 1, config)
    clock = FakeClock(start + timedelta(hours=1, minutes=20))
    source = LiveSource(*live, config, clock)
    source.step()
    with live[1].connect() as c:
        latest = c.execute(sa.text("SELECT max(ordered_at) FROM orders")).scalar()
        count = c.execute(sa.text("SELECT count(*) FROM orders")).scalar()
    assert datetime.fromisoformat(str(latest)) < clock.at.replace(tzinfo=None)
    with batch[1].connect() as c:
        # typed, so that SQLAlchemy binds the time as the sources store it (text), whatever
        # adapters another library registered with sqlite3 (Feast's bind epoch seconds)
        in_batch = c.execute(
            sa.select(sa.func.count())
            .select_from(orders)
            .where(orders.c.ordered_at < clock.at.replace(tzinfo=None))
        ).scalar()
    assert count == in_batch  # exactly what had happened by then, the dirty rows included

    clock.at += timedelta(minutes=25)
    assert source.step()["orders"] > 0
    # killed half-way through the hour: a new simulator takes the hour back ...
    restarted = LiveSource(*live, config, clock)
    assert restarted.take_back_unfinished() == 1
    with live[1].connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM orders")).scalar() < count
    # ... and, hours later, catches up hour by hour and writes the present one as it passes
    clock.at = start + timedelta(hours=5, minutes=30)
    restarted.step()
    clock.at = start + timedelta(hours=6)
    restarted.step()
    assert dump_engines(live) == dump_engines(batch)
    assert last_generated_hour(live[1]) == start + timedelta(hours=5)


def test_live_demo_needs_existing_sources(tmp_path):
    live = engines(tmp_path)
    create_sources(*live)
    with pytest.raises(RuntimeError, match="make demo"):
        LiveSource(*live, DemoConfig()).step()


def dump_engines(pair: tuple[sa.Engine, sa.Engine]) -> dict[str, list[tuple]]:
    out = {}
    for engine, tables in zip(pair, TABLES.values(), strict=True):
        with engine.connect() as c:
            for table in tables:
                rows = c.execute(sa.text(f"SELECT * FROM {table}")).all()
                out[table] = sorted((tuple(r) for r in rows), key=repr)
    return out


def test_until_now_generates_every_hour_that_has_ended(tmp_path):
    """`make demo`'s sources are as of now: the days, then today's hours that have ended."""
    yesterday = datetime.now(timezone.utc).date() - timedelta(days=1)
    run(tmp_path, "--start-date", str(yesterday), "--days", "1", "--until-now")
    present = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    last = last_generated_hour(sa.create_engine(f"sqlite:///{tmp_path / 'orders.db'}"))
    # the last hour that ended (the clock may have turned an hour meanwhile)
    assert present - timedelta(hours=2) <= last <= present - timedelta(hours=1)
