"""The demo source generator: deterministic, appendable, realistically dirty."""

from __future__ import annotations

import math
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import sqlalchemy as sa

from shopsmart_assets.cli.demo import main as demo_main
from shopsmart_assets.demo.generator import (
    DemoConfig,
    Rows,
    SourceState,
    create_sources,
    draw_hour,
    generate,
    insert_rows,
    last_generated_hour,
    pending_updates,
    seed_customers,
)
from shopsmart_assets.demo.live import LiveSource
from shopsmart_assets.sources.tables import customers, interactions, order_items, orders, products

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


def test_seeding_in_chunks_gives_the_same_customers_whatever_the_chunk(tmp_path):
    """The initial customer base is written a chunk at a time (bounded memory at millions of
    customers); the chunk size changes nothing, and sign-ups follow the ids."""
    config = DemoConfig(seed=5)
    first_hour = datetime(2026, 1, 1)
    dumps, countries = [], []
    for chunk in (7, 64, 1000):
        crm = sa.create_engine(f"sqlite:///{tmp_path / f'crm{chunk}.db'}")
        create_sources(crm, crm)
        with crm.begin() as c:
            countries.append(seed_customers(c, 200, first_hour, config, chunk=chunk))
        with crm.connect() as c:
            dumps.append(c.execute(sa.select(customers).order_by(customers.c.customer_id)).all())
    assert dumps[0] == dumps[1] == dumps[2]
    assert all(np.array_equal(countries[0], c) for c in countries)
    rows = dumps[0]
    assert [r.customer_id for r in rows] == list(range(1, 201))
    assert [r.country for r in rows] == [
        ("US", "CA", "GB", "DE", "FR", "ES", "IT")[k] for k in countries[0]
    ]
    signups = [r.signup_at for r in rows]
    assert signups == sorted(signups)
    assert signups[0] >= first_hour - timedelta(days=730)  # the two years before the first day
    assert signups[-1] < first_hour - timedelta(days=1)
    assert all(r.updated_at == r.signup_at and r.signup_at.microsecond == 0 for r in rows)


def _typed_dump(engine: sa.Engine, table: sa.Table) -> list[tuple]:
    """Every stored value with its SQLite type, in a stable order."""
    columns = ", ".join(f"{c.name}, typeof({c.name})" for c in table.columns)
    with engine.connect() as c:
        return sorted(c.exec_driver_sql(f"SELECT {columns} FROM {table.name}").all(), key=repr)


def _records(rows: Rows) -> list[dict]:
    """Rows as SQLAlchemy insert parameters: Python values, None where masked."""
    columns = {
        name: v.astype("datetime64[us]").tolist()
        if v.dtype.kind == "M"
        else np.ma.masked_array(v).tolist()
        for name, v in rows.columns.items()
    }
    return [dict(zip(columns, r, strict=True)) for r in zip(*columns.values(), strict=True)]


@pytest.fixture
def feast_like_adapter(monkeypatch):
    """What Feast does process-wide: sqlite3 binds datetimes as epoch seconds."""
    monkeypatch.setitem(
        sqlite3.adapters, (datetime, sqlite3.PrepareProtocol), lambda d: d.timestamp()
    )


def test_sqlite_rows_are_stored_exactly_as_sqlalchemy_stores_them(tmp_path, feast_like_adapter):
    """On SQLite rows bypass SQLAlchemy (for speed): the values, their types and the
    'YYYY-MM-DD HH:MM:SS.ffffff' text of times must be what SQLAlchemy's insert writes, so
    that extraction's text comparisons and SQLAlchemy's reads see the same data."""
    fast, core = (sa.create_engine(f"sqlite:///{tmp_path / f'{n}.db'}") for n in ("f", "c"))
    for engine in (fast, core):
        create_sources(engine, engine)
    config = DemoConfig(seed=2, orders_per_day=20_000)
    generate(fast, fast, datetime(2026, 1, 1, tzinfo=timezone.utc), 1, config)
    draw = draw_hour(SourceState(fast, fast), datetime(2026, 1, 1, 20, tzinfo=timezone.utc), config)
    assert np.ma.getmaskarray(draw.order_items.columns["product_id"]).any()  # NULLs too
    moments = np.array(
        [
            "1969-12-31T23:59:59.999999",
            "2026-01-01T00:00:00",  # no fraction: SQLAlchemy still writes '.000000'
            "2026-03-29T01:00:00.000001",
            "2099-12-31T23:59:59.5",
        ],
        dtype="datetime64[us]",
    )
    times = Rows(
        pending_updates,
        moments,
        {
            "order_id": np.arange(4),
            "apply_at": moments,
            "new_status": np.array(["refunded"] * 4, dtype=object),
        },
    )
    for rows in (draw.customers, draw.orders, draw.order_items, draw.pending_updates, times):
        with fast.begin() as c:
            c.execute(rows.table.delete())
            insert_rows(c, rows)
        with core.begin() as c:
            c.execute(rows.table.delete())
            c.execute(rows.table.insert(), _records(rows))
        assert _typed_dump(fast, rows.table) == _typed_dump(core, rows.table)
        with fast.connect() as f, core.connect() as k:
            read = [sorted(c.execute(sa.select(rows.table)).all(), key=repr) for c in (f, k)]
        assert read[0] == read[1]
    assert [r[2:4] for r in _typed_dump(fast, pending_updates)[:2]] == [
        ("1969-12-31 23:59:59.999999", "text"),
        ("2026-01-01 00:00:00.000000", "text"),
    ]


def test_the_state_read_back_is_the_state_carried_over(tmp_path):
    """Generating on reads the state back from the databases; it must be exactly what one run
    carries from hour to hour (country codes, the running activity weights, next ids)."""
    config = DemoConfig(seed=4, orders_per_day=20_000)
    crm, orders_db = engines(tmp_path)
    create_sources(crm, orders_db)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    generate(crm, orders_db, start, 1, config)
    carried = SourceState(crm, orders_db)
    for k in range(1, 4):
        draw_hour(carried, start + timedelta(hours=k), config)
    generate(crm, orders_db, start + timedelta(hours=1), 3, config)
    read = SourceState(crm, orders_db)
    assert np.array_equal(read.country, carried.country)
    assert np.array_equal(read.cumulative_weight, carried.cumulative_weight)  # bit for bit
    assert (read.next_customer_id, read.next_order_id, read.next_interaction_id) == (
        carried.next_customer_id,
        carried.next_order_id,
        carried.next_interaction_id,
    )


def test_customers_deleted_from_the_crm_no_longer_buy(tmp_path):
    """A gap in the customer ids (deleted customers) is carried as a zero activity weight."""
    config = DemoConfig(seed=6, orders_per_day=2000)
    crm, orders_db = engines(tmp_path)
    create_sources(crm, orders_db)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    generate(crm, orders_db, start, 1, config)
    with crm.begin() as c:
        c.execute(customers.delete().where(customers.c.customer_id.between(1, 6000)))
    report = generate(crm, orders_db, start + timedelta(hours=1), 12, config)
    assert report.counts["orders"] > 500
    with orders_db.connect() as c:
        bought = c.execute(
            sa.select(sa.func.count())
            .select_from(orders)
            .where(orders.c.ordered_at >= datetime(2026, 1, 1, 1))
            .where(orders.c.customer_id <= 6000)
        ).scalar()
    assert bought == 0


def typed_rows(pair: tuple[sa.Engine, sa.Engine]) -> dict[str, list[tuple]]:
    """Every table as SQLAlchemy reads it (datetimes, floats), in a stable order."""
    tables = {
        pair[0]: [customers, interactions],
        pair[1]: [orders, order_items, products, pending_updates],
    }
    out = {}
    for engine, of_engine in tables.items():
        with engine.connect() as c:
            for table in of_engine:
                rows = c.execute(sa.select(table)).all()
                out[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return out


@pytest.mark.postgres
def test_postgres_gets_the_rows_sqlite_gets(pg, tmp_path):
    """Elsewhere than SQLite rows go through SQLAlchemy Core and the state is read back
    through a server-side cursor: the same rows as SQLite's fast path, appending included."""
    config = DemoConfig(seed=9, orders_per_day=3000)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    on_sqlite = engines(tmp_path)
    create_sources(*on_sqlite)
    generate(*on_sqlite, start, 3, config)
    urls = [pg.create_database(f"demo_generator_{name}") for name in ("crm", "orders")]
    on_postgres = (sa.create_engine(urls[0]), sa.create_engine(urls[1]))
    try:
        create_sources(*on_postgres)
        generate(*on_postgres, start, 1, config)
        assert generate(*on_postgres, start, 3, config).skipped_hours == 1
        assert typed_rows(on_postgres) == typed_rows(on_sqlite)
    finally:
        for engine in on_postgres:
            engine.dispose()
