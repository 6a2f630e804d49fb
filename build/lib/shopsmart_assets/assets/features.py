"""Features zone: customer features as of each day (Spark) and the online store."""

from datetime import date

import dagster as dg
from dagster_pyspark import LazyPySparkResource

from shopsmart_assets.assets.lake import PURCHASES_KEY
from shopsmart_assets.assets.raw import CRM_CUSTOMERS_KEY, CRM_INTERACTIONS_KEY, SINGLE_RUN
from shopsmart_assets.lineage import LATEST_ONLY
from shopsmart_assets.partitions import Partitions
from shopsmart_assets.resources import LakeResource, OnlineStoreResource
from shopsmart_assets.resources.lake import lake_table
from shopsmart_assets.transforms.features import INTERACTION_DAYS, LOOKBACK_DAYS
from shopsmart_assets.transforms.features import customer_features as compute_customer_features
from shopsmart_assets.workers import SPARK_STEP, STANDARD_STEP

CUSTOMER_FEATURES_KEY = dg.AssetKey(["features", "customer_features"])
ONLINE_STORE_KEY = dg.AssetKey(["features", "online_store"])


def trailing(days: int) -> dg.TimeWindowPartitionMapping:
    """The day and the `days - 1` before it; before the first partition there is nothing to
    wait for."""
    return dg.TimeWindowPartitionMapping(
        start_offset=-(days - 1), allow_nonexistent_upstream_partitions=True
    )


def build_feature_assets(partitions: Partitions) -> list[dg.AssetsDefinition]:
    """Customer features (Spark) and the online store they are served from."""

    @dg.asset(
        key=CUSTOMER_FEATURES_KEY,
        metadata=lake_table("features", "customer_features"),
        deps=[
            dg.AssetDep(PURCHASES_KEY, partition_mapping=trailing(LOOKBACK_DAYS)),
            dg.AssetDep(CRM_INTERACTIONS_KEY, partition_mapping=trailing(INTERACTION_DAYS)),
            CRM_CUSTOMERS_KEY,
        ],
        partitions_def=partitions.daily,
        backfill_policy=SINGLE_RUN,
        group_name="features",
        kinds={"spark", "parquet"},
        **SPARK_STEP,
    )
    def customer_features(
        context: dg.AssetExecutionContext, pyspark: LazyPySparkResource, lake: LakeResource
    ) -> dg.MaterializeResult:
        """One row per customer in the day's CRM snapshot, as of the end of the day: recency,
        frequency and spend over 7/30/90 days (from the 90 days of purchases it reads),
        interactions and support tickets over 30 days, tenure, email validity, segment,
        country. Point-in-time correct: nothing dated after the partition's day is read."""
        spark = pyspark.spark_session
        features = compute_customer_features(
            lake.read_spark(context, spark, PURCHASES_KEY),
            lake.read_spark(context, spark, CRM_INTERACTIONS_KEY),
            lake.read_spark(context, spark, CRM_CUSTOMERS_KEY),
            [date.fromisoformat(key) for key in context.partition_keys],
        ).withColumnRenamed("as_of_date", "date")
        with lake.staging() as staging:
            staged = lake.write_spark_daily(
                context, CUSTOMER_FEATURES_KEY, {None: features}, staging
            )
            lake.publish_staged(context, CUSTOMER_FEATURES_KEY, staged)
        total = sum(
            lake.record_partition(context, CUSTOMER_FEATURES_KEY, key)
            for key in context.partition_keys
        )
        return dg.MaterializeResult(
            metadata=lake.summary(
                context,
                CUSTOMER_FEATURES_KEY,
                total,
                purchase_partitions_read=len(lake.upstream_keys(context, PURCHASES_KEY)),
            )
        )

    @dg.asset(
        key=ONLINE_STORE_KEY,
        metadata=LATEST_ONLY,
        deps=[CUSTOMER_FEATURES_KEY],
        partitions_def=partitions.daily,
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
        for key in context.partition_keys:
            frame = lake.read_pandas(context, CUSTOMER_FEATURES_KEY, for_partitions=[key])
            frame["as_of_date"] = frame.pop("partition").map(date.fromisoformat)
            changed = online_store.upsert(frame)
            context.add_asset_metadata(
                {"dagster/row_count": len(frame), "customers_updated": changed},
                partition_key=key,
            )
        return dg.MaterializeResult(metadata={"customers_served": online_store.count()})

    return [customer_features, online_store]
