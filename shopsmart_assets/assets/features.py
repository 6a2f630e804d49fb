"""Features zone: customer features as of each day (Spark) and the online store."""

from datetime import date, timedelta

import dagster as dg
from dagster_pyspark import LazyPySparkResource

from shopsmart_assets.assets.lake import PURCHASES_KEY, read_lake, write_daily
from shopsmart_assets.assets.raw import CRM_CUSTOMERS_KEY, CRM_INTERACTIONS_KEY, SINGLE_RUN
from shopsmart_assets.observability import count_rows, partition_metadata, summary_metadata
from shopsmart_assets.partitions import daily_partitions, day_of
from shopsmart_assets.resources import LakeResource, OnlineStoreResource
from shopsmart_assets.transforms.features import (
    INTERACTION_DAYS,
    LOOKBACK_DAYS,
)
from shopsmart_assets.transforms.features import (
    customer_features as compute_customer_features,
)
from shopsmart_assets.workers import SPARK_STEP, STANDARD_STEP

CUSTOMER_FEATURES_KEY = dg.AssetKey(["features", "customer_features"])
ONLINE_STORE_KEY = dg.AssetKey(["features", "online_store"])


def first_day() -> date:
    return daily_partitions.start.date()


def trailing_days(first: date, last: date, window: int) -> list[tuple[date, None]]:
    """Daily partitions from `window - 1` days before `first` to `last`, clipped to the start
    of the partitions (before it there is no data to wait for)."""
    start = max(first - timedelta(days=window - 1), first_day())
    return [(start + timedelta(days=k), None) for k in range((last - start).days + 1)]


@dg.asset(
    key=CUSTOMER_FEATURES_KEY,
    deps=[
        dg.AssetDep(
            PURCHASES_KEY,
            partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-(LOOKBACK_DAYS - 1)),
        ),
        dg.AssetDep(
            CRM_INTERACTIONS_KEY,
            partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-(INTERACTION_DAYS - 1)),
        ),
        CRM_CUSTOMERS_KEY,
    ],
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    **SPARK_STEP,
    group_name="features",
    kinds={"spark", "parquet"},
)
def customer_features(
    context: dg.AssetExecutionContext, pyspark: LazyPySparkResource, lake: LakeResource
) -> dg.MaterializeResult:
    """One row per customer in the day's CRM snapshot, as of the end of the day: recency,
    frequency and spend over 7/30/90 days (from the 90 days of purchases it reads),
    interactions and support tickets over 30 days, tenure, email validity, segment, country.
    Point-in-time correct: nothing dated after the partition's day is read."""
    keys = context.partition_keys
    days = [day_of(k) for k in keys]
    needed_by = f"features/customer_features {keys[0]}..{keys[-1]}"
    purchase_paths = lake.require_partitions(
        "curated", "purchases", trailing_days(days[0], days[-1], LOOKBACK_DAYS), needed_by
    )
    interaction_paths = lake.require_partitions(
        "raw", "crm_interactions", trailing_days(days[0], days[-1], INTERACTION_DAYS), needed_by
    )
    customer_paths = lake.require_partitions(
        "raw", "crm_customers", [(d, None) for d in days], needed_by
    )

    spark = pyspark.spark_session
    features = compute_customer_features(
        read_lake(spark, lake, "curated", "purchases", purchase_paths),
        read_lake(spark, lake, "raw", "crm_interactions", interaction_paths),
        read_lake(spark, lake, "raw", "crm_customers", customer_paths),
        days,
    ).withColumnRenamed("as_of_date", "date")

    total = 0
    with lake.staging() as staging:
        write_daily(features, staging, days)
        lake.publish_daily(staging, "features", "customer_features", days)
    for key, day in zip(keys, days, strict=True):
        path = lake.partition_dir("features", "customer_features", day)
        rows = count_rows(path)
        total += rows
        context.add_asset_metadata(partition_metadata(rows, path), partition_key=key)
    return dg.MaterializeResult(
        metadata=summary_metadata(
            lake.partition_dir("features", "customer_features", days[-1]),
            total,
            len(days),
            purchase_partitions_read=len(purchase_paths),
        )
    )


@dg.asset(
    key=ONLINE_STORE_KEY,
    deps=[CUSTOMER_FEATURES_KEY],
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    group_name="features",
    kinds={"sql"},
    **STANDARD_STEP,
)
def online_store(
    context: dg.AssetExecutionContext, lake: LakeResource, online_store: OnlineStoreResource
) -> dg.MaterializeResult:
    """The latest feature values of every customer, served by customer id from a SQL table
    (`shopsmart-features CUSTOMER_ID`). A day's features replace a customer's row only if
    they are as of that day or later, so backfills never overwrite fresher values."""
    days = sorted(day_of(k) for k in context.partition_keys)
    lake.require_partitions(
        "features", "customer_features", [(d, None) for d in days], "features/online_store"
    )
    for day in days:
        frame = lake.read_daily("features", "customer_features", [day]).rename(
            columns={"date": "as_of_date"}
        )
        changed = online_store.upsert(frame)
        context.add_asset_metadata(
            {"dagster/row_count": len(frame), "customers_updated": changed},
            partition_key=day.isoformat(),
        )
    return dg.MaterializeResult(metadata={"customers_served": online_store.count()})
