"""Customer features as of a day (Spark): recency, frequency and monetary value over 7, 30
and 90 days, CRM interactions over 30 days and CRM attributes.

Point-in-time correct by construction: the features as of day D use purchases and
interactions dated D or earlier, and the CRM snapshot of day D.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

WINDOWS = (7, 30, 90)
LOOKBACK_DAYS = max(WINDOWS)
INTERACTION_DAYS = 30
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$"
# Orders that were refunded or cancelled did not end in a purchase.
NOT_PURCHASED = ("cancelled", "refunded")

FEATURE_COLUMNS = (
    "as_of_date",
    "customer_id",
    "recency_days",
    *(f"frequency_{w}d" for w in WINDOWS),
    *(f"monetary_{w}d" for w in WINDOWS),
    "interactions_30d",
    "support_tickets_30d",
    "tenure_days",
    "has_valid_email",
    "segment",
    "country",
)
# The instant a day's features became true (the end of the day, UTC), for the feature store.
EVENT_TIMESTAMP = "event_timestamp"


def as_of_dates(spark: SparkSession, day_ends: Mapping[date, datetime]) -> DataFrame:
    """(as_of_date, event_timestamp) for each day, as literals in the plan: no Python data
    shipped to the JVM, which in local mode would start Python workers to read it."""
    rows = [
        F.struct(
            F.lit(day).cast("date").alias("as_of_date"),
            F.timestamp_seconds(F.lit(int(end.timestamp()))).alias(EVENT_TIMESTAMP),
        )
        for day, end in day_ends.items()
    ]
    return spark.range(1).select(F.inline(F.array(*rows)))


def daily_activity(purchases: DataFrame) -> DataFrame:
    """Orders and spend per customer and day, counting only purchases that stood."""
    return (
        purchases.where(~F.col("status").isin(*NOT_PURCHASED))
        .groupBy("date", "customer_id")
        .agg(
            F.countDistinct("order_id").alias("orders"),
            F.sum("amount_usd").alias("spend_usd"),
        )
    )


def _as_of(frame: DataFrame, dates: DataFrame, days: int) -> DataFrame:
    """Pair each row with every as-of date whose trailing `days` window contains it."""
    return frame.join(
        dates,
        (frame["date"] <= dates["as_of_date"])
        & (frame["date"] > F.date_sub(dates["as_of_date"], days)),
    )


def customer_features(
    purchases: DataFrame,
    interactions: DataFrame,
    customers: DataFrame,
    day_ends: Mapping[date, datetime],
) -> DataFrame:
    """One row per (as_of_date, customer in that day's CRM snapshot), for each day of
    `day_ends` (day → the aware instant it ends, carried as `event_timestamp`)."""
    # One Spark plan, read top to bottom (docs/lake.md, features): the windows and joins
    # belong together.
    dates = as_of_dates(purchases.sparkSession, day_ends)

    activity = _as_of(daily_activity(purchases), dates, LOOKBACK_DAYS)
    age = F.datediff("as_of_date", "date")
    rfm = activity.groupBy("as_of_date", "customer_id").agg(
        F.min(age).alias("recency_days"),
        *(
            F.sum(F.when(age < w, F.col("orders")).otherwise(0)).alias(f"frequency_{w}d")
            for w in WINDOWS
        ),
        *(
            F.round(F.sum(F.when(age < w, F.col("spend_usd")).otherwise(0.0)), 2).alias(
                f"monetary_{w}d"
            )
            for w in WINDOWS
        ),
    )

    contacts = _as_of(interactions.where(F.col("customer_id").isNotNull()), dates, INTERACTION_DAYS)
    engagement = contacts.groupBy("as_of_date", "customer_id").agg(
        F.count(F.lit(1)).alias("interactions_30d"),
        F.sum(F.when(F.col("kind") == "support_ticket", 1).otherwise(0)).alias(
            "support_tickets_30d"
        ),
    )

    base = (
        customers.where(F.col("customer_id").isNotNull())
        .join(dates, customers["date"] == dates["as_of_date"])
        .select(
            "as_of_date",
            EVENT_TIMESTAMP,
            "customer_id",
            F.datediff("as_of_date", F.to_date("signup_at")).alias("tenure_days"),
            F.coalesce(F.col("email").rlike(EMAIL_PATTERN), F.lit(False)).alias("has_valid_email"),
            "segment",
            "country",
        )
        .dropDuplicates(["as_of_date", "customer_id"])
    )
    counts = [f"frequency_{w}d" for w in WINDOWS] + ["interactions_30d", "support_tickets_30d"]
    money = [f"monetary_{w}d" for w in WINDOWS]
    return (
        base.join(rfm, ["as_of_date", "customer_id"], "left")
        .join(engagement, ["as_of_date", "customer_id"], "left")
        .fillna(0, subset=counts)
        .fillna(0.0, subset=money)
        .select(*FEATURE_COLUMNS, EVENT_TIMESTAMP)
    )
