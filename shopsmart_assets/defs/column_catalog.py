"""What every column of every lake table means: the one place column descriptions live.

`TABLES` maps each table's lake location (`<zone>/<table>`, as `lake_table` declares it) to a
`dagster.TableSchema` of its columns: name, type as the Parquet files hold it (Arrow's
notation), description. Hive partition columns (`date`, and `hour` for hourly tables) come
last: they are in the path, not in the files. The assets carry these schemas as definition
metadata (`dagster/column_schema`, shown in the UI before anything is materialized), every
materialization reports the schema it really wrote with these descriptions, and docs/lake.md
shows the same tables, generated between marker comments:

    <!-- columns:curated/purchases -->
    | column | type | description |   (generated; edit this module, not the page)
    <!-- /columns -->

    shopsmart-lake-docs --write-docs docs/lake.md   # regenerate the tables (cli/lake_docs.py)
    shopsmart-lake-docs --check-docs docs/lake.md   # exit 1 if out of date
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import dagster as dg

from shopsmart_assets.lake.metadata import PARTITION_COLUMNS, column_schema_key
from shopsmart_assets.lake.paths import LAKE_TABLE
from shopsmart_assets.sources.tables import RAW_SCHEMAS, UNPARSED
from shopsmart_assets.transforms.currency import USD_PER_UNIT
from shopsmart_assets.transforms.features import EVENT_TIMESTAMP, WINDOWS
from shopsmart_assets.transforms.purchases import MAX_AMOUNT_USD, MAX_QUANTITY, MAX_UNIT_PRICE
from shopsmart_assets.transforms.training import LABEL_DAYS

Described = tuple[str, str, str]  # (name, type, description)

# Hive partition columns: in the path (`date=…/hour=…`), not in the files.
DATE = (
    "date",
    "date",
    "The local date the partition starts on, in the company time zone (SHOPSMART_TIMEZONE): "
    "`date=YYYY-MM-DD` in the path (a Hive partition column, not in the files).",
)
HOUR = (
    "hour",
    "string",
    "The partition's hour: its local start time and UTC offset, `HHMM±HHMM` (e.g. `0100-0500`, "
    "the second 01:00 of a fall-back night in New York): `hour=…` in the path (a Hive "
    "partition column, text, not in the files).",
)
assert {DATE[0], HOUR[0]} == PARTITION_COLUMNS

UNPARSED_VALUES = (
    "The source's values that do not read as their column's type, as JSON text "
    '`{"column": "the value as the source held it"}` (the typed column is null then); null '
    "when every value of the row read cleanly."
)


def _raw(table: str, descriptions: Mapping[str, str], hourly: bool = False) -> dg.TableSchema:
    """A raw table: the extraction's Arrow schema (source_tables.RAW_SCHEMAS) with a
    description for each of its columns, then the Hive columns."""
    schema = RAW_SCHEMAS[table]
    described = {**descriptions, UNPARSED: UNPARSED_VALUES}
    if set(described) != set(schema.names):
        raise ValueError(f"raw/{table}: describe exactly {schema.names}, got {sorted(described)}")
    columns = [(f.name, str(f.type), described[f.name]) for f in schema]
    return _schema([*columns, DATE, *([HOUR] if hourly else [])])


def _schema(columns: Iterable[Described]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, type_, text) for name, type_, text in columns]
    )


RAW = {
    "raw/crm_customers": _raw(
        "crm_customers",
        {
            "customer_id": "The CRM's customer id (its primary key): one row per customer "
            "signed up before the end of the day (a daily snapshot).",
            "email": "Email address as the CRM holds it, unvalidated: it may be malformed "
            "(features/customer_features flags it in `has_valid_email`). Personal data.",
            "full_name": "Name as entered in the CRM. Personal data.",
            "country": "Two-letter country code (ISO 3166-1 alpha-2), e.g. `US`, `DE`.",
            "segment": "Marketing segment: `consumer`, `premium` or `business`.",
            "signup_at": "When the customer signed up (UTC).",
            "updated_at": "When the CRM last changed the customer's record (UTC).",
        },
    ),
    "raw/crm_interactions": _raw(
        "crm_interactions",
        {
            "interaction_id": "The CRM's interaction id (its primary key).",
            "customer_id": "The customer it concerns (CRM `customer_id`); may be null.",
            "channel": "Where it happened: `email`, `web`, `phone` or `chat`.",
            "kind": "`newsletter_click`, `support_ticket`, `review` or `complaint`.",
            "occurred_at": "When it happened (UTC): within the partition's day.",
        },
    ),
    "raw/orders": _raw(
        "orders",
        {
            "order_id": "The order id. Not unique: the order system may store an order twice "
            "(curated/purchases keeps one copy, the latest by `updated_at`).",
            "customer_id": "The ordering customer (CRM `customer_id`); may be null or unknown "
            "to the CRM.",
            "ordered_at": "When the order was placed (UTC): within the partition's hour.",
            "status": "The order's status when the hour was extracted: `placed`, `refunded` or "
            "`cancelled`.",
            "currency": "ISO 4217 code of the order's prices, as stored (any code, "
            "validated downstream).",
            "channel": "Sales channel: `web`, `app` or `store`.",
            "updated_at": "When this version of the order was written (UTC); equals "
            "`ordered_at` until a later update (a refund or a cancellation).",
        },
        hourly=True,
    ),
    "raw/order_items": _raw(
        "order_items",
        {
            "order_id": "The order the line belongs to (raw/orders `order_id`); the partition "
            "holds the lines of the orders placed in its hour.",
            "line_no": "The line's number within the order, from 1.",
            "product_id": "The product ordered; may be null.",
            "quantity": "Units ordered, as stored (unvalidated).",
            "unit_price": "Price of one unit in the order's `currency`, as stored "
            "(unvalidated: may be zero or negative).",
        },
        hourly=True,
    ),
}

# curated/purchases: (name, type, meaning, what validation guarantees in curated/purchases).
_PURCHASES: tuple[tuple[str, str, str, str], ...] = (
    ("order_id", "int64", "The order (raw/orders `order_id`).", "With `line_no`, unique per day."),
    ("line_no", "int64", "The line's number within the order.", ""),
    (
        "customer_id",
        "int64",
        "The ordering customer (CRM `customer_id`).",
        "Known to the day's CRM snapshot (raw/crm_customers).",
    ),
    ("product_id", "int64", "The product bought.", "Never null."),
    ("ordered_at", "timestamp[ns]", "When the order was placed (UTC).", ""),
    (
        "status",
        "string",
        "The order's latest status (its version with the latest `updated_at`): `placed`, "
        "`refunded` or `cancelled`. Refunded and cancelled lines are kept, but features and "
        "labels count only purchases that stood.",
        "",
    ),
    ("channel", "string", "Sales channel: `web`, `app` or `store`.", ""),
    (
        "currency",
        "string",
        "ISO 4217 code the order is priced in.",
        f"One with a reference rate: {', '.join(f'`{c}`' for c in USD_PER_UNIT)}.",
    ),
    ("quantity", "int64", "Units bought.", f"From 1 to {MAX_QUANTITY:,}."),
    (
        "unit_price",
        "double",
        "Price of one unit in `currency`.",
        f"Above 0 and at most {MAX_UNIT_PRICE:,.0f}.",
    ),
    (
        "usd_per_unit",
        "double",
        "The reference rate: US dollars per unit of `currency` (the finance team's book "
        "rate, transforms/currency.py).",
        "",
    ),
    (
        "amount_usd",
        "double",
        "The line's amount in US dollars: `quantity` × `unit_price` × `usd_per_unit`, in exact "
        "decimal arithmetic, rounded half up to the cent.",
        f"At most {MAX_AMOUNT_USD:,}.",
    ),
    (
        "updated_at",
        "timestamp[ns]",
        "When the order's latest version was written (UTC).",
        "",
    ),
)
# What a quarantined line's columns say instead, where validation guaranteed something.
_QUARANTINED = {
    "amount_usd": "Always null: amounts are computed for valid lines only.",
    "usd_per_unit": "The reference rate: US dollars per unit of `currency`; null for a "
    "currency without one.",
}
_REJECTED = "As the line had it, unvalidated: null, repeated or out of bounds as its `reason` says."

PURCHASES = _schema(
    [(name, type_, f"{meaning} {rule}".strip()) for name, type_, meaning, rule in _PURCHASES]
    + [DATE]
)
QUARANTINE = _schema(
    [
        (name, type_, _QUARANTINED.get(name) or f"{meaning} {_REJECTED}")
        for name, type_, meaning, _ in _PURCHASES
    ]
    + [
        (
            "reason",
            "string",
            "Why the line is not a purchase: the first rule it breaks, e.g. `duplicate`, "
            "`unknown_currency`, `non_positive_price`, or `unparseable_<column>` for a value the "
            "source held unreadably (docs/lake.md, Purchases and quarantine, lists every "
            "reason in the order they are checked).",
        ),
        (
            UNPARSED,
            "string",
            f"{UNPARSED_VALUES} The line's values, else its order's.",
        ),
        DATE,
    ]
)

_AS_OF = "the as-of day"
_STOOD = "purchases that stood (not refunded or cancelled)"
# A customer's features as of a day (name, type in features/customer_features, description):
# the training set holds the same, its numbers as doubles (the model's input).
_FEATURES: tuple[Described, ...] = (
    (
        "recency_days",
        "int32",
        f"Days from the customer's latest of {_STOOD} to {_AS_OF} (0: that day); null when "
        f"none in the {max(WINDOWS)} days up to it.",
    ),
    *(
        (
            f"frequency_{w}d",
            "int64",
            f"Orders among {_STOOD} placed in the {w} days up to and including {_AS_OF}.",
        )
        for w in WINDOWS
    ),
    *(
        (
            f"monetary_{w}d",
            "double",
            f"US dollars spent on {_STOOD} in the {w} days up to and including {_AS_OF} "
            "(sum of `amount_usd`, rounded to the cent).",
        )
        for w in WINDOWS
    ),
    (
        "interactions_30d",
        "int64",
        f"CRM interactions of the customer in the 30 days up to and including {_AS_OF}.",
    ),
    ("support_tickets_30d", "int64", "Of those interactions, support tickets."),
    ("tenure_days", "int32", f"Days from the customer's sign-up day (UTC date) to {_AS_OF}."),
    (
        "has_valid_email",
        "bool",
        "Whether the CRM's email looks like an address (`name@domain.tld`); false when missing.",
    ),
    ("segment", "string", "Marketing segment from the CRM: `consumer`, `premium` or `business`."),
    ("country", "string", "Two-letter country code from the CRM."),
)
_NUMBERS = {"int32", "int64", "double"}
_CUSTOMER = "The customer (CRM `customer_id`): one per customer of {snapshot}."


def _day_end(day: str) -> str:
    return (
        f"The instant the row became true: the end of {day} in the company time zone, in UTC "
        "(a 23- or 25-hour day's end on DST days). Feast's point-in-time joins run on it."
    )


CUSTOMER_FEATURES = _schema(
    [
        ("customer_id", "int64", _CUSTOMER.format(snapshot="the day's CRM snapshot")),
        *_FEATURES,
        (EVENT_TIMESTAMP, "timestamp[ns]", _day_end("the day (the as-of day)")),
        DATE,
    ]
)
TRAINING_SET = _schema(
    [
        (
            "as_of_date",
            "date32[day]",
            f"The as-of day of the features: {LABEL_DAYS} days before the partition's day.",
        ),
        ("customer_id", "int64", _CUSTOMER.format(snapshot="the CRM snapshot of `as_of_date`")),
        *((name, "double" if t in _NUMBERS else t, text) for name, t, text in _FEATURES),
        (
            "label",
            "int64",
            f"1 if the customer made a purchase that stood (not refunded or cancelled) on any "
            f"of the {LABEL_DAYS} days after `as_of_date` (the partition's day and the "
            f"{LABEL_DAYS - 1} before it), else 0.",
        ),
        DATE,
    ]
)
SCORES = _schema(
    [
        ("customer_id", "int64", _CUSTOMER.format(snapshot="the day's CRM snapshot")),
        (
            "score",
            "double",
            "Probability, from 0 to 1, that the customer makes a purchase that stands in the "
            f"{LABEL_DAYS} days after the day, by the model that was champion that day.",
        ),
        (
            "model_version",
            "int64",
            "The version of the MLflow registered model `shopsmart-purchase-propensity` that "
            "gave the score (the day's champion).",
        ),
        (EVENT_TIMESTAMP, "timestamp[us, tz=UTC]", _day_end("the day")),
        DATE,
    ]
)

TABLES: Mapping[str, dg.TableSchema] = {
    **RAW,
    "curated/purchases": PURCHASES,
    "quarantine/purchases": QUARANTINE,
    "features/customer_features": CUSTOMER_FEATURES,
    "features/training_set": TRAINING_SET,
    "scores/purchase_propensity": SCORES,
}


def column_schema(location: str) -> dg.TableSchema | None:
    """The documented columns of the table at `<zone>/<table>`; None for what is no table
    (the models zone holds JSON records)."""
    return TABLES.get(location)


def with_documented_columns(assets: Iterable[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """The assets with the documented columns of every lake table they write, as definition
    metadata (`dagster/column_schema` for the asset's own table, `<role>_column_schema` for
    another): the UI shows them before anything is materialized, and each materialization
    describes the columns it wrote with them."""

    def documented(spec: dg.AssetSpec) -> dg.AssetSpec:
        schemas = {
            column_schema_key(name.partition("#")[2] or None): TABLES[location]
            for name, location in (spec.metadata or {}).items()
            if (name == LAKE_TABLE or name.startswith(f"{LAKE_TABLE}#")) and location in TABLES
        }
        return spec.merge_attributes(metadata=schemas) if schemas else spec

    return [a.map_asset_specs(documented) for a in assets]
