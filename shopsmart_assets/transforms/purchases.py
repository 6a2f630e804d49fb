"""From raw orders to curated purchases (Spark): dedup, join, currency and validation.

The grain is the order line. Every raw order-item row comes out exactly once, either as a
valid purchase or in quarantine with the first reason it fails (`REASONS`, in order), so
valid + quarantined = source rows for every partition.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from shopsmart_assets.transforms.currency import USD_PER_UNIT

# Checked in this order; a line is quarantined with the first that applies.
REASONS = (
    "duplicate",  # a second copy of an order line the system delivered twice
    "missing_order",  # an item whose order header is not in the same partition
    "null_customer_id",
    "null_product_id",
    "unknown_customer",  # the CRM does not know the customer on that day
    "unknown_currency",  # not in currency.USD_PER_UNIT
    "non_positive_quantity",
    "non_positive_price",
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


def purchase_lines(orders: DataFrame, items: DataFrame, customers: DataFrame) -> DataFrame:
    """Each raw item row joined to its order's latest version, with a `reason` column that is
    null for valid lines. `customers` is the CRM snapshot (date, customer_id) per day."""
    headers = latest_order_versions(orders).select(
        "date",
        "order_id",
        "customer_id",
        "ordered_at",
        "status",
        "channel",
        "currency",
        "updated_at",
        F.lit(True).alias("_has_order"),
    )
    known = (
        customers.where(F.col("customer_id").isNotNull())
        .select("date", "customer_id")
        .distinct()
        .withColumn("_known_customer", F.lit(True))
    )
    copy_order = Window.partitionBy("date", "order_id", "line_no").orderBy(
        "product_id", "quantity", "unit_price"
    )
    lines = (
        items.drop("hour")
        .withColumn("_copy", F.row_number().over(copy_order))
        .join(headers, ["date", "order_id"], "left")
        .join(known, ["date", "customer_id"], "left")
        .withColumn("usd_per_unit", usd_rate(F.col("currency")))
    )
    reason = (
        F.when(F.col("_copy") > 1, "duplicate")
        .when(F.col("_has_order").isNull(), "missing_order")
        .when(F.col("customer_id").isNull(), "null_customer_id")
        .when(F.col("product_id").isNull(), "null_product_id")
        .when(F.col("_known_customer").isNull(), "unknown_customer")
        .when(F.col("usd_per_unit").isNull(), "unknown_currency")
        .when(F.coalesce(F.col("quantity") <= 0, F.lit(True)), "non_positive_quantity")
        .when(F.coalesce(F.col("unit_price") <= 0, F.lit(True)), "non_positive_price")
    )
    # Money in exact decimal arithmetic, rounded half up to the cent (binary doubles would
    # turn 14.50 x 0.73 = 10.585 into 10.58); stored as double for readers' convenience.
    amount = F.round(
        F.col("quantity").cast("decimal(12,0)")
        * F.col("unit_price").cast("decimal(14,2)")
        * F.col("usd_per_unit").cast("decimal(10,6)"),
        2,
    ).cast("double")
    return (
        lines.withColumn("reason", reason)
        .withColumn("amount_usd", amount)
        .select(*PURCHASE_COLUMNS, "reason")
    )


def split_valid(lines: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(valid purchases without `reason`, quarantined lines with it)."""
    valid = lines.where(F.col("reason").isNull()).drop("reason")
    quarantined = lines.where(F.col("reason").isNotNull())
    return valid, quarantined
