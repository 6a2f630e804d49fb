"""From raw orders to curated purchases (Spark): dedup, join, currency and validation.

The grain is the order line. Every raw order-item row comes out exactly once, either as a
valid purchase or in quarantine with the first reason it fails (`REASONS`, in order), so
valid + quarantined = source rows for every partition. No value, however absurd, can make the
transformation fail: amounts are only computed for lines whose quantity and price are within
sane bounds, and every cast is a `try_cast`.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from shopsmart_assets.sources.tables import SOURCE_SCHEMAS, UNPARSED
from shopsmart_assets.transforms.currency import USD_PER_UNIT

# Sane bounds: beyond them a value is a data error, not a sale.
MAX_QUANTITY = 100_000  # units of one product on one order line
MAX_UNIT_PRICE = 1_000_000.0  # in the order's currency
MAX_AMOUNT_USD = 10_000_000  # one order line

ITEM_COLUMNS = tuple(SOURCE_SCHEMAS["order_items"].names)
ORDER_COLUMNS = tuple(SOURCE_SCHEMAS["orders"].names)


def _unparseable(columns: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"unparseable_{c}" for c in columns)


# Checked in this order; a line is quarantined with the first that applies.
REASONS = tuple(
    dict.fromkeys(
        (
            *_unparseable(ITEM_COLUMNS),  # a value of the line that the source held unreadably
            "duplicate",  # a second copy of an order line the system delivered twice
            "missing_order",  # an item whose order header is not in the same partition
            *_unparseable(ORDER_COLUMNS),  # a value of the order header, likewise
            "null_customer_id",
            "null_product_id",
            "unknown_customer",  # the CRM does not know the customer on that day
            "unknown_currency",  # not in currency.USD_PER_UNIT
            "non_positive_quantity",  # zero, negative or none
            "quantity_out_of_range",  # above MAX_QUANTITY
            "non_positive_price",  # zero, negative or none
            "unit_price_out_of_range",  # above MAX_UNIT_PRICE, or not a finite number
            "amount_out_of_range",  # the line's amount above MAX_AMOUNT_USD
        )
    )
)

PURCHASE_COLUMNS = (
    "date",
    "order_id",
    "line_no",
    "customer_id",
    "product_id",
    "ordered_at",
    "status",
    "channel",
    "currency",
    "quantity",
    "unit_price",
    "usd_per_unit",
    "amount_usd",
    "updated_at",
)
QUARANTINE_COLUMNS = (*PURCHASE_COLUMNS, "reason", UNPARSED)

_UNPARSED_MAP = "map<string,string>"


def latest_order_versions(orders: DataFrame) -> DataFrame:
    """One row per (date, order_id): the version with the latest `updated_at`."""
    latest_first = Window.partitionBy("date", "order_id").orderBy(
        F.col("updated_at").desc(), F.col("status").asc()
    )
    return (
        orders.where(F.col("order_id").isNotNull())
        .withColumn("_version", F.row_number().over(latest_first))
        .where(F.col("_version") == 1)
        .drop("_version")
    )


def usd_rate(currency: Column) -> Column:
    """US dollars per unit of `currency`; null for currencies ShopSmart does not accept."""
    mapping = F.create_map(*[F.lit(x) for pair in USD_PER_UNIT.items() for x in pair])
    return mapping[currency]


def _first_unparsed(unparsed: Column, columns: tuple[str, ...]) -> Column:
    """`unparseable_<column>` for the first column (in schema order) the source held
    unreadably, else null."""
    values = F.from_json(unparsed, _UNPARSED_MAP)
    reason = F.lit(None).cast("string")
    for column in reversed(columns):
        reason = F.when(
            F.map_contains_key(values, column), F.lit(f"unparseable_{column}")
        ).otherwise(reason)
    return reason


def known_customers(orders: DataFrame, customers: DataFrame, broadcast: bool) -> DataFrame:
    """(date, customer_id, _known_customer) once for each customer the CRM holds on that day.

    With `broadcast`, only the customers who ordered that day are looked up: the CRM snapshot
    (millions of rows, far more customers than order on a day) is filtered against the
    broadcast set of ordering customers instead of being shuffled, and the result is small
    enough to broadcast to the order headers in turn. For ranges too big to broadcast, the
    whole snapshot is joined by shuffle."""
    known = customers.where(F.col("customer_id").isNotNull()).select("date", "customer_id")
    if broadcast:
        ordering = (
            orders.where(F.col("customer_id").isNotNull()).select("date", "customer_id").distinct()
        )
        known = known.join(F.broadcast(ordering), ["date", "customer_id"], "left_semi")
    # distinct: a CRM snapshot without a primary key must not duplicate lines.
    known = known.distinct().withColumn("_known_customer", F.lit(True))
    return F.broadcast(known) if broadcast else known


def purchase_lines(
    orders: DataFrame, items: DataFrame, customers: DataFrame, broadcast: bool = True
) -> DataFrame:
    """Each raw item row joined to its order's latest version, with a `reason` column that is
    null for valid lines. `customers` is the CRM snapshot (date, customer_id) per day.
    `broadcast`: look the customers up by broadcast (see `known_customers`); same result."""
    # One Spark plan, read top to bottom as docs/lake.md states the rules: splitting it
    # would hide the order in which they apply.
    headers = latest_order_versions(orders).select(
        "date",
        "order_id",
        "customer_id",
        "ordered_at",
        "status",
        "channel",
        "currency",
        "updated_at",
        F.col(UNPARSED).alias("_order_unparsed"),
        F.lit(True).alias("_has_order"),
    )
    # Whether the CRM knows the customer is a property of the order: looked up once per order
    # header, not once per line.
    headers = headers.join(
        known_customers(orders, customers, broadcast), ["date", "customer_id"], "left"
    )
    copy_order = Window.partitionBy("date", "order_id", "line_no").orderBy(
        "product_id", "quantity", "unit_price"
    )
    lines = (
        items.drop("hour")
        # Clustered by order once: the copy numbering and the join with the order headers
        # both use this partitioning (one shuffle of the lines instead of two).
        .repartition("date", "order_id")
        .withColumn("_copy", F.row_number().over(copy_order))
        .join(headers, ["date", "order_id"], "left")
        .withColumn("usd_per_unit", usd_rate(F.col("currency")))
    )
    quantity, price = F.col("quantity"), F.col("unit_price")
    finite_price = ~F.isnan(price) & (price <= MAX_UNIT_PRICE)
    # Computed only where the factors are within bounds, so it can neither overflow nor fail.
    amount = F.when(
        (quantity > 0) & (quantity <= MAX_QUANTITY) & (price > 0) & finite_price,
        quantity.try_cast("decimal(12,0)")
        * price.try_cast("decimal(14,2)")
        * F.col("usd_per_unit").try_cast("decimal(10,6)"),
    )
    reason = (
        F.when(_first_unparsed(F.col(UNPARSED), ITEM_COLUMNS).isNotNull(), "unparseable")
        .when(F.col("_copy") > 1, "duplicate")
        .when(F.col("_has_order").isNull(), "missing_order")
        .when(_first_unparsed(F.col("_order_unparsed"), ORDER_COLUMNS).isNotNull(), "unparseable")
        .when(F.col("customer_id").isNull(), "null_customer_id")
        .when(F.col("product_id").isNull(), "null_product_id")
        .when(F.col("_known_customer").isNull(), "unknown_customer")
        .when(F.col("usd_per_unit").isNull(), "unknown_currency")
        .when(F.coalesce(quantity <= 0, F.lit(True)), "non_positive_quantity")
        .when(quantity > MAX_QUANTITY, "quantity_out_of_range")
        .when(F.coalesce(price <= 0, F.lit(True)), "non_positive_price")
        .when(~finite_price, "unit_price_out_of_range")
        .when(F.coalesce(F.col("_amount") > MAX_AMOUNT_USD, F.lit(True)), "amount_out_of_range")
    )
    # Which column was unreadable: the line's own first, then its order header's.
    named = F.when(
        F.col("reason") == "unparseable",
        F.coalesce(
            _first_unparsed(F.col(UNPARSED), ITEM_COLUMNS),
            _first_unparsed(F.col("_order_unparsed"), ORDER_COLUMNS),
        ),
    ).otherwise(F.col("reason"))
    return (
        lines.withColumn("_amount", amount)
        .withColumn("reason", reason)
        .withColumn("reason", named)
        # Money in exact decimal arithmetic, rounded half up to the cent (binary doubles would
        # turn 14.50 x 0.73 = 10.585 into 10.58); stored as double for readers' convenience.
        .withColumn(
            "amount_usd",
            F.when(F.col("reason").isNull(), F.round(F.col("_amount"), 2).cast("double")),
        )
        .withColumn(UNPARSED, F.coalesce(F.col(UNPARSED), F.col("_order_unparsed")))
        .select(*QUARANTINE_COLUMNS)
    )


def split_valid(lines: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(valid purchases, quarantined lines with their `reason` and unreadable source values)."""
    valid = lines.where(F.col("reason").isNull()).select(*PURCHASE_COLUMNS)
    quarantined = lines.where(F.col("reason").isNotNull())
    return valid, quarantined
