"""Generate ShopSmart's demo CRM and orders databases, an hour at a time.

Every hour is drawn from its own random stream (seed, hour), and ids continue from what the
database already holds, so generating 14 days at once or 10 days and then 4 more gives the same
rows. Late updates are scheduled in a generator-private table and applied when the hour they
fall in is generated, the way a real order system changes past orders.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import sqlalchemy as sa

from shopsmart_assets.source_tables import (
    crm_metadata,
    customers,
    interactions,
    order_items,
    orders,
    orders_metadata,
    products,
)
from shopsmart_assets.transforms.currency import USD_PER_UNIT

# Generator bookkeeping, kept beside the orders tables but not part of the source contract.
_private = sa.MetaData()
pending_updates = sa.Table(
    "demo_pending_updates",
    _private,
    sa.Column("order_id", sa.BigInteger, nullable=False),
    sa.Column("apply_at", sa.DateTime, nullable=False, index=True),
    sa.Column("new_status", sa.String(20), nullable=False),
)
generated_hours = sa.Table(
    "demo_generated_hours",
    _private,
    sa.Column("hour_start", sa.DateTime, primary_key=True),
)
# The hour `shopsmart-demo --live` is writing as it happens, with the first ids it drew, so
# that an interrupted hour can be taken back and drawn again identically.
live_hours = sa.Table(
    "demo_live_hours",
    _private,
    sa.Column("hour_start", sa.DateTime, primary_key=True),
    sa.Column("first_order_id", sa.BigInteger, nullable=False),
    sa.Column("first_customer_id", sa.BigInteger, nullable=False),
    sa.Column("first_interaction_id", sa.BigInteger, nullable=False),
)

UNKNOWN_CUSTOMER_BASE = 900_000_000
UNKNOWN_CURRENCIES = ("XXX", "BTC", "ZZZ")
COUNTRY_CURRENCY = {
    "US": "USD", "CA": "CAD", "GB": "GBP", "DE": "EUR", "FR": "EUR", "ES": "EUR", "IT": "EUR",
}  # fmt: skip
COUNTRY_SHARE = {"US": 0.45, "CA": 0.1, "GB": 0.15, "DE": 0.12, "FR": 0.09, "ES": 0.05, "IT": 0.04}
SEGMENTS = ("consumer", "premium", "business")
CATEGORIES = ("electronics", "home", "fashion", "beauty", "sports", "toys", "grocery", "books")
# Monday .. Sunday; weekends sell more.
WEEKDAY_FACTOR = np.array([0.92, 0.95, 0.97, 1.0, 1.06, 1.08, 1.02])
FIRST_NAMES = ("ana", "ben", "chen", "dana", "eli", "fatima", "george", "hana", "ivan", "jo")
LAST_NAMES = ("smith", "garcia", "muller", "rossi", "dubois", "kim", "patel", "novak", "silva")
MALFORMED_EMAIL_SHAPES = (
    "{n}.example.com",
    "{n}@",
    "@example.com",
    "{n}@@example.com",
    "{n} @x.io",
)


@dataclass(frozen=True)
class DirtyRates:
    """How often each kind of dirty row appears (fractions of orders, items or customers)."""

    duplicate_order: float = 0.01  # the same order (header and items) delivered twice
    late_update: float = 0.03  # refunded or cancelled 2 hours to 7 days after the order
    malformed_email: float = 0.02  # of customers
    non_positive_price: float = 0.005  # of order items: price 0 or negative
    unknown_currency: float = 0.005  # of orders
    unknown_customer: float = 0.005  # of orders: a customer id the CRM does not know
    null_key: float = 0.002  # of orders (customer_id) and of items (product_id)


@dataclass(frozen=True)
class DemoConfig:
    seed: int = 7
    orders_per_day: int = 500
    rates: DirtyRates = field(default_factory=DirtyRates)
    timezone: str = "UTC"


@dataclass
class GenerationReport:
    first_hour: datetime | None = None
    last_hour: datetime | None = None
    hours: int = 0
    skipped_hours: int = 0
    counts: Counter[str] = field(default_factory=Counter)


def hour_share(local_hours: np.ndarray) -> np.ndarray:
    """Relative order volume by local hour: quiet nights, a lunch bump and an evening peak."""
    h = local_hours.astype(float)
    return 0.15 + 0.6 * np.exp(-(((h - 12.5) / 2.5) ** 2)) + np.exp(-(((h - 20.0) / 2.5) ** 2))


_ALL_HOURS_SHARE = hour_share(np.arange(24)).sum()


def customer_propensity(customer_ids: np.ndarray) -> np.ndarray:
    """A heavy-tailed, fixed activity weight per customer: a few buy often, most rarely."""
    u = ((customer_ids.astype(np.uint64) * np.uint64(2654435761)) % np.uint64(2**32)).astype(
        float
    ) / 2**32
    return 1.0 / (u + 0.02) ** 0.9


class SourceState:
    """What the databases hold that the next hour builds on."""

    def __init__(self, crm: sa.Engine, orders_db: sa.Engine) -> None:
        with crm.connect() as c:
            # In id order: draws index this array, and a database (PostgreSQL) may return
            # rows in any order without ORDER BY.
            rows = c.execute(
                sa.select(customers.c.customer_id, customers.c.country).order_by(
                    customers.c.customer_id
                )
            ).all()
            self.next_interaction_id = (
                c.execute(sa.select(sa.func.max(interactions.c.interaction_id))).scalar() or 0
            ) + 1
        self.customer_ids = np.array([r[0] for r in rows], dtype=np.int64)
        self.customer_country = {r[0]: r[1] for r in rows}
        self.weights = customer_propensity(self.customer_ids)
        with orders_db.connect() as c:
            self.next_order_id = (
                c.execute(sa.select(sa.func.max(orders.c.order_id))).scalar() or 0
            ) + 1
            product_rows = c.execute(
                sa.select(products.c.product_id, products.c.list_price_usd).order_by(
                    products.c.product_id
                )
            ).all()
            self.done_hours = {
                r[0] for r in c.execute(sa.select(generated_hours.c.hour_start)).all()
            }
        self.product_ids = np.array([r[0] for r in product_rows], dtype=np.int64)
        self.product_price = np.array([r[1] for r in product_rows], dtype=float)

    @property
    def next_customer_id(self) -> int:
        return int(self.customer_ids.max()) + 1 if len(self.customer_ids) else 1

    def add_customers(self, ids: np.ndarray, countries: list[str]) -> None:
        self.customer_ids = np.concatenate([self.customer_ids, ids])
        self.weights = np.concatenate([self.weights, customer_propensity(ids)])
        self.customer_country.update(zip(ids.tolist(), countries, strict=True))


def _emails(rng: np.random.Generator, ids: np.ndarray, rate: float) -> tuple[list, list]:
    names, emails = [], []
    for cid in ids.tolist():
        first = FIRST_NAMES[cid % len(FIRST_NAMES)]
        last = LAST_NAMES[(cid // 7) % len(LAST_NAMES)]
        names.append(f"{first.title()} {last.title()}")
        handle = f"{first}.{last}{cid}"
        if rng.random() < rate:
            shape = MALFORMED_EMAIL_SHAPES[int(rng.integers(len(MALFORMED_EMAIL_SHAPES)))]
            emails.append(shape.format(n=handle))
        else:
            emails.append(f"{handle}@example.com")
    return names, emails


def _customer_rows(
    rng: np.random.Generator, ids: np.ndarray, signups: list[datetime], rates: DirtyRates
) -> tuple[list[dict], list[str]]:
    countries = rng.choice(
        list(COUNTRY_SHARE), size=len(ids), p=np.array(list(COUNTRY_SHARE.values()))
    ).tolist()
    segments = rng.choice(SEGMENTS, size=len(ids), p=[0.75, 0.15, 0.10]).tolist()
    names, emails = _emails(rng, ids, rates.malformed_email)
    rows = [
        {
            "customer_id": int(cid),
            "email": email,
            "full_name": name,
            "country": country,
            "segment": segment,
            "signup_at": signup,
            "updated_at": signup,
        }
        for cid, email, name, country, segment, signup in zip(
            ids.tolist(), emails, names, countries, segments, signups, strict=True
        )
    ]
    return rows, countries


def _seed_reference_data(
    crm: sa.Engine, orders_db: sa.Engine, config: DemoConfig, first_hour: datetime
) -> None:
    """Products and an initial customer base, created once for an empty source."""
    rng = np.random.default_rng([config.seed, 0])
    with orders_db.begin() as c:
        if c.execute(sa.select(sa.func.count()).select_from(products)).scalar() == 0:
            n = 200
            prices = np.round(np.exp(rng.normal(3.3, 0.9, size=n)) + 1.0, 2)
            cats = rng.choice(CATEGORIES, size=n).tolist()
            c.execute(
                products.insert(),
                [
                    {
                        "product_id": i + 1,
                        "name": f"{cats[i]} item {i + 1}",
                        "category": cats[i],
                        "list_price_usd": float(prices[i]),
                    }
                    for i in range(n)
                ],
            )
    with crm.begin() as c:
        if c.execute(sa.select(sa.func.count()).select_from(customers)).scalar() == 0:
            n = max(50, config.orders_per_day * 6)
            ids = np.arange(1, n + 1, dtype=np.int64)
            ages = rng.uniform(1, 730, size=n)
            signups = [
                (first_hour - timedelta(days=float(a))).replace(tzinfo=None).replace(microsecond=0)
                for a in ages
            ]
            rows, _ = _customer_rows(rng, ids, signups, config.rates)
            c.execute(customers.insert(), rows)


@dataclass
class HourDraw:
    """One hour of source activity, drawn but not yet written: each row with the moment it
    happens (naive UTC, as the sources store times), in time order per table."""

    hour_start: datetime  # naive UTC
    customers: list[dict]
    interactions: list[dict]
    # (ordered_at, header rows, item rows): a duplicated order has two headers
    orders: list[tuple[datetime, list[dict], list[dict]]]
    pending_updates: list[dict]
    counts: Counter[str]

    def due(self, written_until: datetime | None, until: datetime) -> HourDraw:
        """The rows that happen in [written_until, until): what a source would have received
        in that stretch of time."""

        def window(moment: datetime) -> bool:
            return (written_until is None or moment >= written_until) and moment < until

        return HourDraw(
            hour_start=self.hour_start,
            customers=[r for r in self.customers if window(r["signup_at"])],
            interactions=[r for r in self.interactions if window(r["occurred_at"])],
            orders=[o for o in self.orders if window(o[0])],
            pending_updates=[r for r in self.pending_updates if window(r["order_time"])],
            counts=Counter(),
        )


def draw_hour(state: SourceState, hour: datetime, config: DemoConfig) -> HourDraw:
    """Draw an hour from its own random stream; advances `state` (ids, customers)."""
    rates = config.rates
    hour_index = int(hour.timestamp() // 3600)
    rng = np.random.default_rng([config.seed, hour_index])
    local = hour.astimezone(ZoneInfo(config.timezone))
    expected = (
        config.orders_per_day
        * WEEKDAY_FACTOR[local.weekday()]
        * hour_share(np.array([local.hour]))[0]
        / _ALL_HOURS_SHARE
    )
    n_orders = int(rng.poisson(expected))
    naive = hour.astimezone(timezone.utc).replace(tzinfo=None)
    counts: Counter[str] = Counter()

    def moments(k: int) -> list[datetime]:
        seconds = np.sort(rng.integers(0, 3600 * 1_000_000, size=k)) // 1000 * 1000
        return [naive + timedelta(microseconds=int(s)) for s in seconds]

    # New sign-ups, in proportion to trade.
    n_new = int(rng.poisson(0.05 * n_orders + 0.05))
    new_ids = np.arange(state.next_customer_id, state.next_customer_id + n_new, dtype=np.int64)
    customer_rows, new_countries = _customer_rows(rng, new_ids, moments(n_new), rates)
    state.add_customers(new_ids, new_countries)

    # Orders, from customers weighted by their activity.
    p = state.weights / state.weights.sum()
    buyers = rng.choice(state.customer_ids, size=n_orders, p=p)
    order_times = moments(n_orders)
    order_rows: list[tuple[datetime, list[dict], list[dict]]] = []
    pending_rows: list[dict] = []
    for i in range(n_orders):
        order_id = state.next_order_id
        state.next_order_id += 1
        customer_id: int | None = int(buyers[i])
        currency = COUNTRY_CURRENCY[state.customer_country[customer_id]]
        draw = rng.random(4)
        if draw[0] < rates.unknown_currency:
            currency = UNKNOWN_CURRENCIES[int(rng.integers(len(UNKNOWN_CURRENCIES)))]
        if draw[1] < rates.unknown_customer:
            customer_id = UNKNOWN_CUSTOMER_BASE + int(rng.integers(1, 1_000_000))
        elif draw[1] < rates.unknown_customer + rates.null_key:
            customer_id = None
        header = {
            "order_id": order_id,
            "customer_id": customer_id,
            "ordered_at": order_times[i],
            "status": "placed",
            "currency": currency,
            "channel": str(rng.choice(["web", "app", "store"], p=[0.55, 0.35, 0.10])),
            "updated_at": order_times[i],
        }
        lines = []
        rate = USD_PER_UNIT.get(currency, 1.0)
        for line_no in range(1, 2 + min(int(rng.poisson(1.2)), 7)):
            k = min(int(rng.zipf(1.6)) - 1, len(state.product_ids) - 1)
            price = round(float(state.product_price[k]) / rate * rng.uniform(0.85, 1.0), 2)
            line_draw = rng.random(2)
            if line_draw[0] < rates.non_positive_price:
                price = 0.0 if rng.random() < 0.5 else -price
            lines.append(
                {
                    "order_id": order_id,
                    "line_no": line_no,
                    "product_id": None
                    if line_draw[1] < rates.null_key
                    else int(state.product_ids[k]),
                    "quantity": 1 + int(rng.poisson(0.3)),
                    "unit_price": price,
                }
            )
        copies = 2 if draw[2] < rates.duplicate_order else 1
        order_rows.append((order_times[i], [header] * copies, lines * copies))
        counts["duplicate_orders"] += copies - 1
        if draw[3] < rates.late_update:
            delay = timedelta(seconds=float(rng.uniform(2 * 3600, 7 * 86400)))
            pending_rows.append(
                {
                    "order_time": order_times[i],
                    "order_id": order_id,
                    "apply_at": order_times[i] + delay,
                    "new_status": "refunded" if rng.random() < 0.6 else "cancelled",
                }
            )

    # CRM interactions: support contacts, newsletter clicks, reviews.
    n_inter = int(rng.poisson(0.6 * n_orders + 0.2))
    who = rng.choice(state.customer_ids, size=n_inter, p=p)
    interaction_rows = [
        {
            "interaction_id": state.next_interaction_id + j,
            "customer_id": int(who[j]),
            "channel": str(rng.choice(["email", "web", "phone", "chat"])),
            "kind": str(
                rng.choice(
                    ["newsletter_click", "support_ticket", "review", "complaint"],
                    p=[0.6, 0.2, 0.15, 0.05],
                )
            ),
            "occurred_at": t,
        }
        for j, t in enumerate(moments(n_inter))
    ]
    state.next_interaction_id += n_inter

    return HourDraw(
        hour_start=naive,
        customers=customer_rows,
        interactions=interaction_rows,
        orders=order_rows,
        pending_updates=pending_rows,
        counts=counts,
    )


def write_rows(crm: sa.Engine, orders_db: sa.Engine, draw: HourDraw) -> Counter[str]:
    """Insert drawn rows (all of an hour, or the stretch `HourDraw.due` selected)."""
    headers = [h for _, hs, _ in draw.orders for h in hs]
    items = [i for _, _, its in draw.orders for i in its]
    pending = [{k: v for k, v in r.items() if k != "order_time"} for r in draw.pending_updates]
    with crm.begin() as c:
        if draw.customers:
            c.execute(customers.insert(), draw.customers)
        if draw.interactions:
            c.execute(interactions.insert(), draw.interactions)
    with orders_db.begin() as c:
        if headers:
            c.execute(orders.insert(), headers)
            c.execute(order_items.insert(), items)
        if pending:
            c.execute(pending_updates.insert(), pending)
    return Counter(
        customers=len(draw.customers),
        interactions=len(draw.interactions),
        orders=len(headers),
        order_items=len(items),
    )


def finish_hour(orders_db: sa.Engine, hour_start: datetime) -> int:
    """Apply the late updates that fall in the hour (naive UTC start) and record the hour as
    generated, in one transaction; returns how many orders changed."""
    end = hour_start + timedelta(hours=1)
    with orders_db.begin() as c:
        due = c.execute(
            sa.select(pending_updates)
            .where(pending_updates.c.apply_at >= hour_start)
            .where(pending_updates.c.apply_at < end)
            .order_by(pending_updates.c.apply_at, pending_updates.c.order_id)
        ).all()
        for update in due:
            c.execute(
                orders.update()
                .where(orders.c.order_id == update.order_id)
                .values(status=update.new_status, updated_at=update.apply_at)
            )
        c.execute(pending_updates.delete().where(pending_updates.c.apply_at < end))
        c.execute(generated_hours.insert(), {"hour_start": hour_start})
    return len(due)


def _generate_hour(
    crm: sa.Engine, orders_db: sa.Engine, state: SourceState, hour: datetime, config: DemoConfig
) -> Counter[str]:
    draw = draw_hour(state, hour, config)
    counts = draw.counts + write_rows(crm, orders_db, draw)
    counts["late_updates"] += finish_hour(orders_db, draw.hour_start)
    return counts


def create_sources(crm: sa.Engine, orders_db: sa.Engine, reset: bool = False) -> None:
    """Create the source schemas (dropping them first with reset=True)."""
    if reset:
        crm_metadata.drop_all(crm)
        orders_metadata.drop_all(orders_db)
        _private.drop_all(orders_db)
    crm_metadata.create_all(crm)
    orders_metadata.create_all(orders_db)
    _private.create_all(orders_db)


def last_generated_hour(orders_db: sa.Engine) -> datetime | None:
    with orders_db.connect() as c:
        value = c.execute(sa.select(sa.func.max(generated_hours.c.hour_start))).scalar()
    return value.replace(tzinfo=timezone.utc) if value else None


def generate(
    crm: sa.Engine,
    orders_db: sa.Engine,
    first_hour: datetime,
    hours: int,
    config: DemoConfig,
) -> GenerationReport:
    """Generate `hours` hours of activity starting at `first_hour` (tz-aware), skipping any
    hour the source already holds so that a repeated call never duplicates data."""
    _seed_reference_data(crm, orders_db, config, first_hour)
    state = SourceState(crm, orders_db)
    report = GenerationReport()
    # Hours are counted in UTC: local wall-clock arithmetic would step into the hour a
    # spring-forward night skips, or over the one a fall-back night repeats.
    first_utc = first_hour.astimezone(timezone.utc)
    for k in range(hours):
        hour = first_utc + timedelta(hours=k)
        if hour.replace(tzinfo=None) in state.done_hours:
            report.skipped_hours += 1
            continue
        report.counts.update(_generate_hour(crm, orders_db, state, hour, config))
        report.first_hour = report.first_hour or hour
        report.last_hour = hour
        report.hours += 1
    return report
