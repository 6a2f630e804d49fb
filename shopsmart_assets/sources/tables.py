"""The source systems' tables: the contract between ShopSmart's databases and the lake.

`crm_metadata` and `orders_metadata` are the SQLAlchemy definitions the demo generator creates
(docs/sources.md describes them); `SOURCE_SCHEMAS` is what extraction expects to find, and
`RAW_SCHEMAS` what it lands in the raw zone (the same columns plus `unparsed_values`). A source
that drifts from it (a column dropped or renamed, or retyped so that most values no longer read)
stops the extraction with an error naming the source, table, column and partition; a single
value that does not read is kept as text and quarantined downstream.
"""

from __future__ import annotations

import pyarrow as pa
import sqlalchemy as sa

# Money is NUMERIC(12, 2) in the sources; read back as float for the lake.
Money = sa.Numeric(12, 2, asdecimal=False)

crm_metadata = sa.MetaData()

customers = sa.Table(
    "customers",
    crm_metadata,
    sa.Column("customer_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("email", sa.String(255)),
    sa.Column("full_name", sa.String(200)),
    sa.Column("country", sa.String(2)),
    sa.Column("segment", sa.String(20)),
    sa.Column("signup_at", sa.DateTime, nullable=False, index=True),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

interactions = sa.Table(
    "interactions",
    crm_metadata,
    sa.Column("interaction_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("customer_id", sa.BigInteger),
    sa.Column("channel", sa.String(20)),
    sa.Column("kind", sa.String(30)),
    sa.Column("occurred_at", sa.DateTime, nullable=False, index=True),
)

orders_metadata = sa.MetaData()

products = sa.Table(
    "products",
    orders_metadata,
    sa.Column("product_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(200)),
    sa.Column("category", sa.String(50)),
    sa.Column("list_price_usd", Money),
)

# No primary key: the order system is known to deliver the same order twice.
orders = sa.Table(
    "orders",
    orders_metadata,
    sa.Column("order_id", sa.BigInteger, index=True),
    sa.Column("customer_id", sa.BigInteger),
    sa.Column("ordered_at", sa.DateTime, nullable=False, index=True),
    sa.Column("status", sa.String(20)),
    sa.Column("currency", sa.String(3)),
    sa.Column("channel", sa.String(10)),
    sa.Column("updated_at", sa.DateTime, nullable=False, index=True),
)

order_items = sa.Table(
    "order_items",
    orders_metadata,
    sa.Column("order_id", sa.BigInteger, index=True),
    sa.Column("line_no", sa.Integer),
    sa.Column("product_id", sa.BigInteger),
    sa.Column("quantity", sa.Integer),
    sa.Column("unit_price", Money),
)

_TS = pa.timestamp("us", tz="UTC")

# Raw tables keep what a source held even when a value cannot be read as its column's type:
# the typed column is null and this column holds {"column": "the source value as text"} (JSON),
# null for rows that read cleanly. Downstream, such a row is quarantined with its reason.
UNPARSED = "unparsed_values"

SOURCE_SCHEMAS: dict[str, pa.Schema] = {
    "crm_customers": pa.schema(
        [
            ("customer_id", pa.int64()),
            ("email", pa.string()),
            ("full_name", pa.string()),
            ("country", pa.string()),
            ("segment", pa.string()),
            ("signup_at", _TS),
            ("updated_at", _TS),
        ]
    ),
    "crm_interactions": pa.schema(
        [
            ("interaction_id", pa.int64()),
            ("customer_id", pa.int64()),
            ("channel", pa.string()),
            ("kind", pa.string()),
            ("occurred_at", _TS),
        ]
    ),
    "orders": pa.schema(
        [
            ("order_id", pa.int64()),
            ("customer_id", pa.int64()),
            ("ordered_at", _TS),
            ("status", pa.string()),
            ("currency", pa.string()),
            ("channel", pa.string()),
            ("updated_at", _TS),
        ]
    ),
    "order_items": pa.schema(
        [
            ("order_id", pa.int64()),
            ("line_no", pa.int64()),
            ("product_id", pa.int64()),
            ("quantity", pa.int64()),
            ("unit_price", pa.float64()),
        ]
    ),
}

RAW_SCHEMAS: dict[str, pa.Schema] = {
    table: schema.append(pa.field(UNPARSED, pa.string()))
    for table, schema in SOURCE_SCHEMAS.items()
}
