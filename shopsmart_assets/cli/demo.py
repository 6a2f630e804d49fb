"""`shopsmart-demo`: write (or extend) the demo CRM and orders databases."""

from __future__ import annotations

import argparse
import math
import sqlite3
import sys
import time
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from shopsmart_assets import settings
from shopsmart_assets.demo.generator import (
    DemoConfig,
    create_sources,
    generate,
    last_generated_hour,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shopsmart-demo",
        description=(
            "Generate ShopSmart's demo source databases: a CRM (customers, interactions) and an "
            "orders system (orders, order_items, products), with realistic dirty rows. "
            "Deterministic from --seed. By default writes SQLite files under "
            "$SHOPSMART_DATA_DIR/sources; any SQLAlchemy URL works, e.g. "
            "postgresql+psycopg://user:password@host:5432/crm (the database must exist)."
        ),
    )
    parser.add_argument(
        "--crm-url",
        help="SQLAlchemy URL of the CRM (default: $SHOPSMART_CRM_URL"
        " or $SHOPSMART_DATA_DIR/sources/crm.db)",
    )
    parser.add_argument(
        "--orders-url",
        help="SQLAlchemy URL of the orders database (default: "
        "$SHOPSMART_ORDERS_URL or $SHOPSMART_DATA_DIR/sources/orders.db)",
    )
    parser.add_argument(
        "--start-date",
        type=date.fromisoformat,
        default=None,
        help="first day to generate (default: $SHOPSMART_START_DATE, 2026-01-01)",
    )
    parser.add_argument(
        "--end-date",
        type=_day,
        default=None,
        help="last day to generate, YYYY-MM-DD or 'yesterday' (in the time zone); with --days "
        "and no --start-date, the days end here",
    )
    parser.add_argument(
        "--until-now",
        action="store_true",
        help="also generate every hour that has ended since (up to the present hour), so that "
        "the sources are as they would be now",
    )
    parser.add_argument(
        "--plan",
        action="store_true",
        help="print the first and last day that --days/--end-date would generate (the first "
        "day is $SHOPSMART_START_DATE, or the one recorded with the data) and exit",
    )
    span = parser.add_mutually_exclusive_group()
    span.add_argument("--days", type=int, help="days to generate (default 14)")
    span.add_argument("--hours", type=int, help="hours to generate")
    parser.add_argument(
        "--orders-per-day",
        type=int,
        default=500,
        help="average orders per day, from a few hundred to millions (default 500)",
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument(
        "--timezone",
        default=None,
        help="company time zone for days and trading hours (default: $SHOPSMART_TIMEZONE or UTC)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--append",
        action="store_true",
        help="continue after the last generated hour (new data arriving)",
    )
    mode.add_argument(
        "--reset", action="store_true", help="drop and recreate the source tables first"
    )
    mode.add_argument(
        "--live",
        action="store_true",
        help="keep writing new activity as time passes (catching up the hours missed since "
        "the last generated one) until Ctrl-C",
    )
    parser.add_argument(
        "--tick",
        type=float,
        default=5.0,
        help="with --live: seconds between writes (default 5)",
    )
    return parser


def _day(value: str) -> date | str:
    return value if value == "yesterday" else date.fromisoformat(value)


def yesterday(tz: str, now: datetime | None = None) -> date:
    """The local day before today in `tz`."""
    # Long only because it declares every option of the command, each with its help.
    return (now or datetime.now(timezone.utc)).astimezone(ZoneInfo(tz)).date() - timedelta(1)


def plan_days(tz: str, days: int, end: date | str | None, start: date | None) -> tuple[date, date]:
    """The demo's first and last day: `days` days ending `end` (default yesterday), unless the
    partitions' first day is fixed (--start-date, $SHOPSMART_START_DATE, or recorded with the
    data): then from that day through `end`."""
    last = yesterday(tz) if end in (None, "yesterday") else end
    assert isinstance(last, date)
    fixed = start or _fixed_start()
    first = fixed or last - timedelta(days=days - 1)
    if first > last:
        raise SystemExit(f"shopsmart-demo: the first day {first} is after the last day {last}")
    return first, last


def _fixed_start() -> date | None:
    explicit = settings.is_set("SHOPSMART_START_DATE") or settings.recorded_partitions()
    return date.fromisoformat(settings.start_date()) if explicit else None


def _url(explicit: str | None, var: str, default: str) -> str:
    return explicit or settings.url_value(var, default)


def _engine(url: str) -> sa.Engine:
    """An engine for a source URL: SQLite (its directory is created) or PostgreSQL and others
    by SQLAlchemy URL (`postgresql://` gets the psycopg 3 driver; the databases must exist)."""
    if not url.startswith("sqlite:///"):
        # Imported here: the resources package loads Dagster, seconds a SQLite run can skip.
        from shopsmart_assets.resources.sources import source_engine

        return source_engine(url)
    from pathlib import Path

    Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url)  # what source_engine gives a SQLite URL
    sa.event.listen(engine, "connect", _unsynced)
    return engine


def _unsynced(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    """The generator's SQLite connections do not wait for the disk at each commit: an
    interrupted run loses nothing committed, a crash of the machine may damage the demo data
    (regenerate it). Only these connections: the setting is not stored in the file."""
    dbapi_connection.execute("PRAGMA synchronous = OFF")


def local_midnight(day: date, tz: str, days_later: int = 0) -> datetime:
    """The start of a local day, as an aware UTC time (where midnight does not exist, the
    day's first instant)."""
    later = day + timedelta(days=days_later)
    local = datetime(later.year, later.month, later.day, tzinfo=ZoneInfo(tz))
    return local.astimezone(timezone.utc)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    tz = args.timezone or settings.timezone()
    if args.plan or args.end_date is not None:
        if args.hours is not None:
            raise SystemExit("shopsmart-demo: --end-date and --plan count whole days, not --hours")
        first_day, last_day = plan_days(tz, args.days or 14, args.end_date, args.start_date)
        if args.plan:
            print(first_day, last_day)
            return 0
        args.start_date, args.days = first_day, (last_day - first_day).days + 1
    crm = _engine(_url(args.crm_url, settings.CRM_URL_VAR, settings.default_crm_url()))
    orders_db = _engine(
        _url(args.orders_url, settings.ORDERS_URL_VAR, settings.default_orders_url())
    )
    create_sources(crm, orders_db, reset=args.reset)
    config = DemoConfig(seed=args.seed, orders_per_day=args.orders_per_day, timezone=tz)
    if args.live:
        return _live(crm, orders_db, config, args.tick)

    if args.append:
        last = last_generated_hour(orders_db)
        if last is None:
            print("shopsmart-demo: --append needs an existing source; none found", file=sys.stderr)
            return 2
        first_hour = last + timedelta(hours=1)
    else:
        start = args.start_date or date.fromisoformat(settings.start_date())
        first_hour = local_midnight(start, tz)
    if args.hours is not None:
        hours = args.hours
    else:  # whole local days: 23, 24 or 25 hours each (or other counts in odd zones)
        end = local_midnight(first_hour.astimezone(ZoneInfo(tz)).date(), tz, args.days or 14)
        hours = math.ceil((end - first_hour).total_seconds() / 3600)
    if args.until_now:  # and on through the hours that have ended since
        present_hour = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
        hours = max(hours, int((present_hour - first_hour).total_seconds() // 3600))

    report = generate(crm, orders_db, first_hour, hours, config)
    if not args.append:
        _record(first_hour.astimezone(ZoneInfo(tz)).date(), tz)
    _print_report(report, crm, orders_db, tz, args.seed)
    return 0


def _print_report(report, crm: sa.Engine, orders_db: sa.Engine, tz: str, seed: int) -> None:
    if report.hours == 0:
        print(
            f"shopsmart-demo: nothing to do, all {report.skipped_hours} hours already exist "
            "(use --reset to regenerate or --append to add more)"
        )
        return
    c = report.counts
    first = report.first_hour.astimezone(ZoneInfo(tz))
    last = report.last_hour.astimezone(ZoneInfo(tz))
    print(
        f"shopsmart-demo: generated {report.hours} hours, {first:%Y-%m-%d %H:%M} .. "
        f"{last:%Y-%m-%d %H:%M} ({tz}), seed {seed}\n"
        f"  CRM    {crm.url.render_as_string(hide_password=True)}: "
        f"{c['customers']:,} new customers, {c['interactions']:,} interactions\n"
        f"  orders {orders_db.url.render_as_string(hide_password=True)}: {c['orders']:,} order "
        f"rows ({c['duplicate_orders']:,} duplicates), {c['order_items']:,} items, "
        f"{c['late_updates']:,} late updates"
    )
    if report.skipped_hours:
        print(f"  skipped {report.skipped_hours} hours the source already held")


def _record(first_day: date, tz: str) -> None:
    """The partitions start on the demo's first day, recorded with the data once."""
    if settings.record_partitions(str(first_day), tz):
        print(f"  partitions start on {first_day} ({tz}), recorded in {settings.partitions_file()}")
        return
    recorded = settings.recorded_partitions()
    if (
        recorded.get("start_date", str(first_day)) > str(first_day)
        or recorded.get("timezone", tz) != tz
    ):
        print(
            f"  note: {settings.partitions_file()} says partitions start on "
            f"{recorded.get('start_date')} ({recorded.get('timezone')}); days before that or in "
            "another zone are not in the UI (make clean to start over)"
        )


def _live(crm: sa.Engine, orders_db: sa.Engine, config: DemoConfig, tick: float) -> int:
    """Write new activity as time passes until SIGINT or SIGTERM."""
    import signal
    import threading

    from shopsmart_assets.demo.live import LiveSource

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    source = LiveSource(crm, orders_db, config)
    print(
        f"shopsmart-demo: live, writing new orders every {tick:g}s as they happen "
        f"({config.orders_per_day:,} a day on average, {config.timezone}); Ctrl-C stops",
        flush=True,
    )
    if source.take_back_unfinished():
        print("  took back the hour a previous run left half-written", flush=True)
    last_report = 0.0
    while not stop.is_set():
        source.step()
        if time.monotonic() - last_report >= 300:
            last_report = time.monotonic()
            c = source.counts
            print(
                f"  {datetime.now(ZoneInfo(config.timezone)):%Y-%m-%d %H:%M} written so far: "
                f"{c['orders']:,} orders, {c['customers']:,} customers, "
                f"{c['late_updates']:,} late updates",
                flush=True,
            )
        stop.wait(tick)
    print("shopsmart-demo: live simulator stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
