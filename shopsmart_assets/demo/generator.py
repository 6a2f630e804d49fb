"""Generate ShopSmart's demo CRM and orders databases, an hour at a time.

Every hour is drawn from its own random stream (seed, hour), and ids continue from what the
database already holds, so generating 14 days at once or 10 days and then 4 more gives the same
rows. Late updates are scheduled in a generator-private table and applied when the hour they
fall in is generated, the way a real order system changes past orders.

Built for production-like volume (millions of orders a day) in bounded memory: an hour is drawn
as numpy columns, the initial customer base is written in chunks, and the state the next hour
builds on is two numpy arrays indexed by customer id (ids count up from 1 in sign-up order).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import sqlalchemy as sa

from shopsmart_assets.sources.tables import (
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
SEGMENT_SHARE = {"consumer": 0.75, "premium": 0.15, "business": 0.10}
SEGMENTS = tuple(SEGMENT_SHARE)
CATEGORIES = ("electronics", "home", "fashion", "beauty", "sports", "toys", "grocery", "books")
ORDER_CHANNEL_SHARE = {"web": 0.55, "app": 0.35, "store": 0.10}
INTERACTION_CHANNELS = ("email", "web", "phone", "chat")
INTERACTION_KIND_SHARE = {
    "newsletter_click": 0.6, "support_ticket": 0.2, "review": 0.15, "complaint": 0.05,
}  # fmt: skip
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

# Countries and currencies as small-int codes: state and draws index these.
COUNTRIES = tuple(COUNTRY_SHARE)
CURRENCIES = tuple(dict.fromkeys(COUNTRY_CURRENCY.values())) + UNKNOWN_CURRENCIES
_CURRENCY_OF_COUNTRY = np.array([CURRENCIES.index(COUNTRY_CURRENCY[c]) for c in COUNTRIES])
_USD_PER_CURRENCY = np.array([USD_PER_UNIT.get(c, 1.0) for c in CURRENCIES])
# Per customer id: name, and email handle "first.last" (the id follows it).
_NAME_PAIRS = list(itertools.product(FIRST_NAMES, LAST_NAMES))
_FULL_NAMES = np.array([f"{f.title()} {la.title()}" for f, la in _NAME_PAIRS], dtype=object)
_HANDLES = np.array([f"{f}.{la}" for f, la in _NAME_PAIRS], dtype=object)

US_PER_SECOND = 1_000_000
US_PER_HOUR = 3600 * US_PER_SECOND
US_PER_DAY = 24 * US_PER_HOUR
# Rows per chunk when seeding customers, reading them back, and inserting.
CHUNK_ROWS = 100_000
# Uniform draws per customer: country, segment, malformed email, email shape (+ seed sign-up).
_CUSTOMER_DRAWS = 4


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


def expected_orders(hour: datetime, config: DemoConfig) -> float:
    """The mean number of orders in an hour (tz-aware start), by local weekday and hour."""
    local = hour.astimezone(ZoneInfo(config.timezone))
    return float(
        config.orders_per_day
        * WEEKDAY_FACTOR[local.weekday()]
        * hour_share(np.array([local.hour]))[0]
        / _ALL_HOURS_SHARE
    )


def customer_propensity(customer_ids: np.ndarray) -> np.ndarray:
    """A heavy-tailed, fixed activity weight per customer: a few buy often, most rarely."""
    u = ((customer_ids.astype(np.uint64) * np.uint64(2654435761)) % np.uint64(2**32)).astype(
        float
    ) / 2**32
    return 1.0 / (u + 0.02) ** 0.9


def categorical(u: np.ndarray, shares: dict[str, float]) -> np.ndarray:
    """Category codes (indexes into `shares`) for uniform draws `u` in [0, 1)."""
    cdf = np.cumsum(list(shares.values()))
    return np.minimum(np.searchsorted(cdf / cdf[-1], u, side="right"), len(cdf) - 1)


def as_us(moment: datetime) -> np.datetime64:
    """A naive UTC datetime as a numpy microsecond timestamp."""
    return np.datetime64(moment, "us")


# --- rows as columns -----------------------------------------------------------------------


@dataclass(frozen=True)
class Rows:
    """Rows of one table as equal-length numpy columns, each row with the moment it happens
    (`at`, naive UTC). Times are datetime64[us]; a NULL is a masked entry of a `numpy.ma`
    column."""

    table: sa.Table
    at: np.ndarray
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.at)

    def take(self, index: np.ndarray | slice) -> Rows:
        """The rows selected by a boolean mask, an index array or a slice. Columns that share
        an array (`at`, signup_at and updated_at) still do."""
        picked = {id(v): v[index] for v in (self.at, *self.columns.values())}
        columns = {k: picked[id(v)] for k, v in self.columns.items()}
        return Rows(self.table, picked[id(self.at)], columns)

    def during(self, start: datetime | None, end: datetime) -> Rows:
        """The rows that happen in [start, end) (naive UTC; no start: since ever)."""
        mask = self.at < as_us(end)
        if start is not None:
            mask &= self.at >= as_us(start)
        return self.take(mask)


def sqlite_datetimes(values: np.ndarray) -> list[str]:
    """datetime64[us] values as SQLAlchemy stores `DateTime` on SQLite:
    'YYYY-MM-DD HH:MM:SS.ffffff', always six fractional digits."""
    us = values.astype("datetime64[us]").astype(np.int64)
    if not len(us):
        return []
    days, in_day = np.divmod(us, US_PER_DAY)
    first_day = days.min()
    calendar = np.arange(first_day, days.max() + 1).astype("datetime64[D]")
    dates = np.datetime_as_string(calendar).astype("S10").view(np.uint8).reshape(-1, 10)
    text = np.empty((len(us), 27), dtype=np.uint8)  # 26 characters and a separator
    text[:, :10] = dates[days - first_day]
    seconds, fraction = np.divmod(in_day, US_PER_SECOND)
    digits = [seconds // 3600, seconds // 60 % 60, seconds % 60]
    digits = [d for v in digits for d in (v // 10, v % 10)]
    digits += [fraction // 10**k % 10 for k in range(5, -1, -1)]
    positions = [11, 12, 14, 15, 17, 18, *range(20, 26)]
    for position, digit in zip(positions, digits, strict=True):
        text[:, position] = digit + ord("0")
    text[:, [10, 13, 16, 19, 26]] = [ord(c) for c in " ::.\n"]
    return text.tobytes().decode("ascii").split("\n")[:-1]


def _value_matrix(columns: list[np.ndarray], sqlite: bool) -> np.ndarray:
    """Rows x columns of Python values for a DBAPI: ints, floats, str, None where a masked
    column has no value, and datetimes (on SQLite as SQLAlchemy's text, an array shared by
    several columns formatted once)."""
    matrix = np.empty((len(columns[0]), len(columns)), dtype=object)
    texts: dict[int, list[str]] = {}
    for j, column in enumerate(columns):
        if column.dtype.kind == "M" and sqlite:
            if id(column) not in texts:
                texts[id(column)] = sqlite_datetimes(column)
            matrix[:, j] = texts[id(column)]
        elif column.dtype.kind == "M":
            matrix[:, j] = np.ma.getdata(column).astype("datetime64[us]")
        else:
            matrix[:, j] = np.ma.getdata(column)
        matrix[np.ma.getmaskarray(column), j] = None
    return matrix


# Parameters per statement: the lowest limit SQLite builds have had (SQLITE_MAX_VARIABLE_NUMBER).
SQLITE_MAX_PARAMETERS = 999


def _sqlite_insert(connection: sa.Connection, table: sa.Table, names: list[str], rows: int) -> str:
    """INSERT INTO table (names) VALUES (?, ...), ... for `rows` rows."""
    quote = connection.dialect.identifier_preparer.quote
    row = f"({', '.join('?' * len(names))})"
    columns = ", ".join(quote(n) for n in names)
    return f"INSERT INTO {quote(table.name)} ({columns}) VALUES {', '.join([row] * rows)}"


def _insert_sqlite(
    connection: sa.Connection, table: sa.Table, names: list[str], values: np.ndarray
) -> None:
    """Insert a matrix of values, many rows per statement: in SQLite a statement's overhead,
    not its data, is most of the cost of a one-row insert."""
    n, width = values.shape
    per_statement = SQLITE_MAX_PARAMETERS // width
    whole = n - n % per_statement
    cursor = connection.connection.cursor()  # the DBAPI's, in the connection's transaction
    try:
        if whole:
            batches = values[:whole].reshape(-1, per_statement * width).tolist()
            cursor.executemany(_sqlite_insert(connection, table, names, per_statement), batches)
        if whole < n:
            rest = values[whole:].ravel().tolist()
            cursor.execute(_sqlite_insert(connection, table, names, n - whole), rest)
    finally:
        cursor.close()


def insert_rows(connection: sa.Connection, rows: Rows) -> None:
    """Insert rows, CHUNK_ROWS at a time. On SQLite straight through the DBAPI (values as
    SQLAlchemy would store them); elsewhere through SQLAlchemy Core's executemany."""
    sqlite = connection.dialect.name == "sqlite"
    names = list(rows.columns)
    for start in range(0, len(rows), CHUNK_ROWS):
        chunk = rows.take(slice(start, start + CHUNK_ROWS))
        values = _value_matrix([chunk.columns[n] for n in names], sqlite)
        if sqlite:
            _insert_sqlite(connection, rows.table, names, values)
        else:
            records = [dict(zip(names, r, strict=True)) for r in values.tolist()]
            connection.execute(rows.table.insert(), records)


# --- customers -----------------------------------------------------------------------------


def _name_pair(ids: np.ndarray) -> np.ndarray:
    """Each customer's (first, last) name, as an index into _NAME_PAIRS."""
    return ids % len(FIRST_NAMES) * len(LAST_NAMES) + ids // 7 % len(LAST_NAMES)


def _emails(ids: np.ndarray, malformed: np.ndarray, shape_u: np.ndarray) -> np.ndarray:
    """first.last<id>@example.com, or one of the malformed shapes where `malformed`."""
    handles = _HANDLES[_name_pair(ids)]
    emails = [f"{h}{i}@example.com" for h, i in zip(handles.tolist(), ids.tolist(), strict=True)]
    for j in np.flatnonzero(malformed).tolist():
        shape = MALFORMED_EMAIL_SHAPES[int(shape_u[j] * len(MALFORMED_EMAIL_SHAPES))]
        emails[j] = shape.format(n=f"{handles[j]}{ids[j]}")
    return np.array(emails, dtype=object)


def customer_rows(
    ids: np.ndarray, signups: np.ndarray, u: np.ndarray, rates: DirtyRates
) -> tuple[Rows, np.ndarray]:
    """Customers `ids` signing up at `signups` (datetime64[us]), their attributes from uniform
    draws `u` (one row of _CUSTOMER_DRAWS per customer); also returns their country codes."""
    country = categorical(u[:, 0], COUNTRY_SHARE).astype(np.int8)
    segment = categorical(u[:, 1], SEGMENT_SHARE)
    columns = {
        "customer_id": ids,
        "email": _emails(ids, u[:, 2] < rates.malformed_email, u[:, 3]),
        "full_name": _FULL_NAMES[_name_pair(ids)],
        "country": np.array(COUNTRIES, dtype=object)[country],
        "segment": np.array(SEGMENTS, dtype=object)[segment],
        "signup_at": signups,
        "updated_at": signups,
    }
    return Rows(customers, signups, columns), country


def seed_signups(ids: np.ndarray, n: int, u: np.ndarray, first_hour: datetime) -> np.ndarray:
    """Sign-up times of the initial base of `n` customers, spread over the two years before
    `first_hour` (naive UTC) in id order, to the second."""
    span = 729 * US_PER_DAY
    offset = ((ids - 1 + u) / n * span).astype(np.int64)
    start = as_us(first_hour).astype(np.int64) - 730 * US_PER_DAY
    us = start + offset
    return (us - us % US_PER_SECOND).astype("datetime64[us]")


def seed_customers(
    connection: sa.Connection,
    n: int,
    first_hour: datetime,
    config: DemoConfig,
    chunk: int = CHUNK_ROWS,
) -> np.ndarray:
    """Insert the initial customer base, ids 1..n, `chunk` at a time; returns their country
    codes. One random stream, read in order (whole rows of uniform draws), so the chunk size
    does not change the customers."""
    rng = np.random.default_rng([config.seed, 0, 1])
    country = np.empty(n, dtype=np.int8)
    for start in range(0, n, chunk):
        ids = np.arange(start + 1, min(start + chunk, n) + 1, dtype=np.int64)
        u = rng.random((len(ids), _CUSTOMER_DRAWS + 1))
        signups = seed_signups(ids, n, u[:, 0], first_hour)
        rows, country[start : start + len(ids)] = customer_rows(
            ids, signups, u[:, 1:], config.rates
        )
        insert_rows(connection, rows)
    return country


def _seed_reference_data(
    crm: sa.Engine, orders_db: sa.Engine, config: DemoConfig, first_hour: datetime
) -> np.ndarray | None:
    """Products and an initial customer base, created once for an empty source; returns the
    new customers' country codes (None if the CRM had customers)."""
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
        if c.execute(sa.select(customers.c.customer_id).limit(1)).first() is not None:
            return None
        naive = first_hour.astimezone(timezone.utc).replace(tzinfo=None)
        return seed_customers(c, max(50, config.orders_per_day * 6), naive, config)


# --- state ---------------------------------------------------------------------------------


def _integer_blocks(connection: sa.Connection, query: sa.Select) -> Iterator[np.ndarray]:
    """The rows of a query of integers as int64 matrices of up to CHUNK_ROWS rows: on SQLite
    straight from the DBAPI cursor (SQLAlchemy's row objects cost more than SQLite's scan),
    elsewhere streamed through SQLAlchemy (a server-side cursor)."""
    width = len(query.selected_columns)
    if connection.dialect.name == "sqlite":
        compiled = query.compile(dialect=connection.dialect)
        parameters = [compiled.params[k] for k in compiled.positiontup or ()]
        cursor = connection.connection.cursor()
        try:
            cursor.execute(str(compiled), parameters)
            while part := cursor.fetchmany(CHUNK_ROWS):
                yield _integers(part, width)
        finally:
            cursor.close()
        return
    for part in connection.execute(query.execution_options(yield_per=CHUNK_ROWS)).partitions():
        yield _integers(part, width)


def _integers(rows: Sequence[Sequence[int]], width: int) -> np.ndarray:
    """Fetched rows of `width` integers as an int64 matrix."""
    values = itertools.chain.from_iterable(rows)
    return np.fromiter(values, dtype=np.int64, count=width * len(rows)).reshape(-1, width)


def _load_countries(connection: sa.Connection) -> np.ndarray:
    """Every customer's country code, indexed by customer id - 1, read in chunks; -1 for an
    id the CRM does not hold (deleted) or a country the generator does not know."""
    top = connection.execute(sa.select(sa.func.max(customers.c.customer_id))).scalar() or 0
    country = np.full(top, -1, dtype=np.int8)
    code = sa.case({c: i for i, c in enumerate(COUNTRIES)}, value=customers.c.country, else_=-1)
    for block in _integer_blocks(connection, sa.select(customers.c.customer_id, code)):
        country[block[:, 0] - 1] = block[:, 1]
    return country


class SourceState:
    """What the databases hold that the next hour builds on: per customer (id - 1 indexes the
    arrays) the country code and the running total of activity weights (a customer with code
    -1 weighs nothing: never buys); next ids; products. `country`: the customers' country codes
    if the caller has them (it just wrote them), else read from the CRM."""

    def __init__(
        self, crm: sa.Engine, orders_db: sa.Engine, country: np.ndarray | None = None
    ) -> None:
        with crm.connect() as c:
            self.country = _load_countries(c) if country is None else country
            self.next_interaction_id = (
                c.execute(sa.select(sa.func.max(interactions.c.interaction_id))).scalar() or 0
            ) + 1
        weights = customer_propensity(np.arange(1, len(self.country) + 1, dtype=np.int64))
        weights[self.country < 0] = 0.0
        self.cumulative_weight = np.cumsum(weights, out=weights)
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
        return len(self.country) + 1

    def add_customers(self, ids: np.ndarray, country: np.ndarray) -> None:
        """Customers `ids` (the next ids, in order) join with their country codes. The running
        total continues exactly as a cumulative sum over all customers would."""
        assert len(ids) == 0 or ids[0] == self.next_customer_id
        total = self.cumulative_weight[-1:] if len(self.cumulative_weight) else [0.0]
        tail = np.cumsum(np.concatenate([total, customer_propensity(ids)]))[1:]
        self.cumulative_weight = np.concatenate([self.cumulative_weight, tail])
        self.country = np.concatenate([self.country, country.astype(np.int8)])

    def pick_customers(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` customer ids drawn with replacement, in proportion to their activity weight."""
        target = rng.random(n) * self.cumulative_weight[-1]
        order = np.argsort(target)  # sorted, the search walks the array once
        index = np.empty(n, dtype=np.int64)
        index[order] = np.searchsorted(self.cumulative_weight, target[order], side="right")
        return np.minimum(index, len(self.cumulative_weight) - 1) + 1


# --- an hour -------------------------------------------------------------------------------


@dataclass
class HourDraw:
    """One hour of source activity, drawn but not yet written: each row with the moment it
    happens (naive UTC, as the sources store times), in time order per table. An order's
    items happen with it; a duplicated order has its header and items twice."""

    hour_start: datetime  # naive UTC
    customers: Rows
    interactions: Rows
    orders: Rows
    order_items: Rows
    pending_updates: Rows  # `at` is the time of the order they change
    counts: Counter[str]

    def tables(self) -> tuple[Rows, ...]:
        return (
            self.customers,
            self.interactions,
            self.orders,
            self.order_items,
            self.pending_updates,
        )

    def due(self, written_until: datetime | None, until: datetime) -> HourDraw:
        """The rows that happen in [written_until, until): what a source would have received
        in that stretch of time."""
        return HourDraw(
            self.hour_start, *(r.during(written_until, until) for r in self.tables()), Counter()
        )


def _moments(rng: np.random.Generator, hour_start: np.datetime64, k: int) -> np.ndarray:
    """`k` sorted moments in the hour, to the millisecond (datetime64[us])."""
    offsets = np.sort(rng.integers(0, US_PER_HOUR, size=k)) // 1000 * 1000
    return hour_start + offsets.astype("timedelta64[us]")


def _masked(values: np.ndarray, null: np.ndarray) -> np.ndarray:
    """`values` with NULL where `null`."""
    return np.ma.array(values, mask=null) if null.any() else values


def _order_rows(
    rng: np.random.Generator,
    state: SourceState,
    order_at: np.ndarray,
    rates: DirtyRates,
) -> tuple[Rows, Rows, Rows, int]:
    """Headers, items and scheduled late updates of orders placed at `order_at`, and how
    many duplicate headers they include; advances the state's next order id."""
    n = len(order_at)
    order_id = np.arange(state.next_order_id, state.next_order_id + n, dtype=np.int64)
    state.next_order_id += n
    customer_id = state.pick_customers(rng, n)
    u = rng.random((n, 4))  # currency, customer, duplicate, late update

    currency = _CURRENCY_OF_COUNTRY[state.country[customer_id - 1]]
    odd_currency = u[:, 0] < rates.unknown_currency
    unknown_codes = CURRENCIES.index(UNKNOWN_CURRENCIES[0]) + rng.integers(
        len(UNKNOWN_CURRENCIES), size=int(odd_currency.sum())
    )
    currency[odd_currency] = unknown_codes
    unknown = u[:, 1] < rates.unknown_customer
    customer_id[unknown] = UNKNOWN_CUSTOMER_BASE + rng.integers(
        1, 1_000_000, size=int(unknown.sum())
    )
    no_customer = ~unknown & (u[:, 1] < rates.unknown_customer + rates.null_key)
    channel = rng.choice(len(ORDER_CHANNEL_SHARE), size=n, p=list(ORDER_CHANNEL_SHARE.values()))
    headers = Rows(
        orders,
        order_at,
        {
            "order_id": order_id,
            "customer_id": _masked(customer_id, no_customer),
            "ordered_at": order_at,
            "status": np.full(n, "placed", dtype=object),
            "currency": np.array(CURRENCIES, dtype=object)[currency],
            "channel": np.array(list(ORDER_CHANNEL_SHARE), dtype=object)[channel],
            "updated_at": order_at,
        },
    )
    items, of_order = _item_rows(rng, state, order_id, order_at, _USD_PER_CURRENCY[currency], rates)

    copies = np.where(u[:, 2] < rates.duplicate_order, 2, 1)
    headers = headers.take(np.repeat(np.arange(n), copies))
    items = items.take(np.repeat(np.arange(len(items)), copies[of_order]))

    late = np.flatnonzero(u[:, 3] < rates.late_update)
    delay_us = np.rint(rng.uniform(2 * 3600, 7 * 86400, size=len(late)) * US_PER_SECOND)
    refunded = rng.random(len(late)) < 0.6
    updates = Rows(
        pending_updates,
        order_at[late],
        {
            "order_id": order_id[late],
            "apply_at": order_at[late] + delay_us.astype("timedelta64[us]"),
            "new_status": np.where(refunded, "refunded", "cancelled").astype(object),
        },
    )
    return headers, items, updates, int(copies.sum()) - n


def _item_rows(
    rng: np.random.Generator,
    state: SourceState,
    order_id: np.ndarray,
    order_at: np.ndarray,
    usd_per_unit: np.ndarray,
    rates: DirtyRates,
) -> tuple[Rows, np.ndarray]:
    """1 to 8 lines per order, products by Zipf popularity, priced in the order's currency;
    also returns each line's order (index into `order_id`)."""
    lines = 1 + np.minimum(rng.poisson(1.2, size=len(order_id)), 7)
    of_order = np.repeat(np.arange(len(order_id)), lines)
    m = len(of_order)
    line_no = np.arange(m) - np.repeat(np.cumsum(lines) - lines, lines) + 1
    product = np.minimum(rng.zipf(1.6, size=m) - 1, len(state.product_ids) - 1)
    discount = rng.uniform(0.85, 1.0, size=m)
    price = np.round(state.product_price[product] / usd_per_unit[of_order] * discount, 2)
    u = rng.random((m, 2))  # non-positive price, null product
    bad_price = np.flatnonzero(u[:, 0] < rates.non_positive_price)
    price[bad_price] = np.where(rng.random(len(bad_price)) < 0.5, 0.0, -price[bad_price])
    columns = {
        "order_id": order_id[of_order],
        "line_no": line_no,
        "product_id": _masked(state.product_ids[product], u[:, 1] < rates.null_key),
        "quantity": 1 + rng.poisson(0.3, size=m),
        "unit_price": price,
    }
    return Rows(order_items, order_at[of_order], columns), of_order


def _interaction_rows(rng: np.random.Generator, state: SourceState, at: np.ndarray) -> Rows:
    """Support contacts, newsletter clicks, reviews at `at`; advances the next id."""
    n = len(at)
    first = state.next_interaction_id
    state.next_interaction_id += n
    kind = rng.choice(len(INTERACTION_KIND_SHARE), size=n, p=list(INTERACTION_KIND_SHARE.values()))
    columns = {
        "interaction_id": np.arange(first, first + n, dtype=np.int64),
        "customer_id": state.pick_customers(rng, n),
        "channel": np.array(INTERACTION_CHANNELS, dtype=object)[
            rng.integers(len(INTERACTION_CHANNELS), size=n)
        ],
        "kind": np.array(list(INTERACTION_KIND_SHARE), dtype=object)[kind],
        "occurred_at": at,
    }
    return Rows(interactions, at, columns)


def draw_hour(state: SourceState, hour: datetime, config: DemoConfig) -> HourDraw:
    """Draw an hour from its own random stream; advances `state` (ids, customers)."""
    rng = np.random.default_rng([config.seed, int(hour.timestamp() // 3600)])
    n_orders = int(rng.poisson(expected_orders(hour, config)))
    naive = hour.astimezone(timezone.utc).replace(tzinfo=None)
    start = as_us(naive)

    # New sign-ups, in proportion to trade.
    n_new = int(rng.poisson(0.05 * n_orders + 0.05))
    new_ids = np.arange(state.next_customer_id, state.next_customer_id + n_new, dtype=np.int64)
    signups = _moments(rng, start, n_new)
    new_customers, country = customer_rows(
        new_ids, signups, rng.random((n_new, _CUSTOMER_DRAWS)), config.rates
    )
    state.add_customers(new_ids, country)

    # Orders, from customers weighted by their activity; then CRM interactions.
    headers, items, updates, duplicates = _order_rows(
        rng, state, _moments(rng, start, n_orders), config.rates
    )
    n_inter = int(rng.poisson(0.6 * n_orders + 0.2))
    contacts = _interaction_rows(rng, state, _moments(rng, start, n_inter))
    return HourDraw(
        hour_start=naive,
        customers=new_customers,
        interactions=contacts,
        orders=headers,
        order_items=items,
        pending_updates=updates,
        counts=Counter(duplicate_orders=duplicates),
    )


def write_rows(crm: sa.Engine, orders_db: sa.Engine, draw: HourDraw) -> Counter[str]:
    """Insert drawn rows (all of an hour, or the stretch `HourDraw.due` selected)."""
    with crm.begin() as c:
        insert_rows(c, draw.customers)
        insert_rows(c, draw.interactions)
    with orders_db.begin() as c:
        insert_rows(c, draw.orders)
        insert_rows(c, draw.order_items)
        insert_rows(c, draw.pending_updates)
    return Counter(
        customers=len(draw.customers),
        interactions=len(draw.interactions),
        orders=len(draw.orders),
        order_items=len(draw.order_items),
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
        if due:
            c.execute(
                orders.update()
                .where(orders.c.order_id == sa.bindparam("changed_order"))
                .values(status=sa.bindparam("new_status"), updated_at=sa.bindparam("apply_at")),
                [
                    {
                        "changed_order": u.order_id,
                        "new_status": u.new_status,
                        "apply_at": u.apply_at,
                    }
                    for u in due
                ],
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
    seeded = _seed_reference_data(crm, orders_db, config, first_hour)
    state = SourceState(crm, orders_db, seeded)
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
