"""Features zone: customer features as of each day (Spark) and their Feast online store."""

from datetime import date, datetime
from typing import TYPE_CHECKING

import dagster as dg

from shopsmart_assets.defs.asset_graph import LATEST_ONLY
from shopsmart_assets.defs.lake.assets import PURCHASES_KEY
from shopsmart_assets.defs.links import docs_link
from shopsmart_assets.defs.raw.assets import CRM_CUSTOMERS_KEY, CRM_INTERACTIONS_KEY
from shopsmart_assets.defs.worker_pools import SINGLE_RUN, online_store_step
from shopsmart_assets.feature_repo import CUSTOMER_FEATURES_VIEW
from shopsmart_assets.lake import lake_table
from shopsmart_assets.lake.metadata import count_rows
from shopsmart_assets.partitions import Partitions
from shopsmart_assets.resources import FeatureStoreResource, LakeResource
from shopsmart_assets.resources.feature_store import feast_source
from shopsmart_assets.transforms.features import INTERACTION_DAYS, LOOKBACK_DAYS
from shopsmart_assets.transforms.features import customer_features as compute_customer_features

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

CUSTOMER_FEATURES_KEY = dg.AssetKey(["features", "customer_features"])
ONLINE_STORE_KEY = dg.AssetKey(["features", "online_store"])


def trailing(days: int) -> dg.TimeWindowPartitionMapping:
    """The day and the `days - 1` before it; before the first partition there is nothing to
    wait for."""
    return dg.TimeWindowPartitionMapping(
        start_offset=-(days - 1), allow_nonexistent_upstream_partitions=True
    )


def day_ends(partitions_def: dg.PartitionsDefinition, keys: list[str]) -> dict[date, datetime]:
    """Each day's end in the company time zone (23, 24 or 25 hours after its start): the
    instant as of which its features hold."""
    assert isinstance(partitions_def, dg.TimeWindowPartitionsDefinition)
    return {
        date.fromisoformat(key): partitions_def.time_window_for_partition_key(key).end
        for key in keys
    }


def customer_features_spec(partitions: Partitions) -> dg.AssetSpec:
    """features/customer_features, computed by the Spark step (assets/spark_step.py)."""
    return dg.AssetSpec(
        CUSTOMER_FEATURES_KEY,
        description="One row per customer in the day's CRM snapshot, as of the end of the "
        "day: recency, frequency and spend over 7/30/90 days (from the 90 days of purchases "
        "it reads), interactions and support tickets over 30 days, tenure, email validity, "
        "segment, country. Point-in-time correct: nothing dated after the partition's day is "
        "read. Spark.",
        metadata={
            **lake_table("features", "customer_features"),
            **feast_source(CUSTOMER_FEATURES_VIEW),
            **docs_link("lake.md", "Features and the training set"),
        },
        deps=[
            dg.AssetDep(PURCHASES_KEY, partition_mapping=trailing(LOOKBACK_DAYS)),
            dg.AssetDep(CRM_INTERACTIONS_KEY, partition_mapping=trailing(INTERACTION_DAYS)),
            CRM_CUSTOMERS_KEY,
        ],
        partitions_def=partitions.daily,
        group_name="features",
        kinds={"spark", "deltalake"},
    )


def materialize_customer_features(
    context: dg.AssetExecutionContext, spark: "SparkSession", lake: LakeResource
) -> dg.MaterializeResult:
    """The step's days of customer features (transforms/features.py), read from the lake's
    purchases (published before, never passed in memory), written and published."""
    features = compute_customer_features(
        lake.read_spark(context, spark, PURCHASES_KEY),
        lake.read_spark(context, spark, CRM_INTERACTIONS_KEY),
        lake.read_spark(context, spark, CRM_CUSTOMERS_KEY),
        day_ends(context.assets_def.partitions_def, context.partition_keys),
    ).withColumnRenamed("as_of_date", "date")
    with lake.staging(context, CUSTOMER_FEATURES_KEY) as staging:
        staged = lake.write_spark_daily(context, {None: features}, staging)
        lake.publish_staged(context, CUSTOMER_FEATURES_KEY, staged)
    total = sum(
        lake.record_partition(context, CUSTOMER_FEATURES_KEY, key) for key in context.partition_keys
    )
    return lake.materialize_result(
        context,
        CUSTOMER_FEATURES_KEY,
        total,
        purchase_partitions_read=len(lake.upstream_keys(context, PURCHASES_KEY)),
    )


def build_feature_assets(partitions: Partitions) -> list[dg.AssetsDefinition]:
    """The online store the customer features are served from (the features themselves are
    computed in the Spark step)."""

    @dg.asset(
        key=ONLINE_STORE_KEY,
        metadata={**LATEST_ONLY, **docs_link("ml.md", "The feature repository")},
        deps=[CUSTOMER_FEATURES_KEY],
        partitions_def=partitions.daily,
        backfill_policy=SINGLE_RUN,
        group_name="features",
        kinds={"feast"},
        **online_store_step(),
    )
    def online_store(
        context: dg.AssetExecutionContext, lake: LakeResource, feature_store: FeatureStoreResource
    ) -> dg.MaterializeResult:
        """The day's customer features materialized into Feast's online store (feature view
        `customer_features`), served by customer id (`shopsmart-features CUSTOMER_ID`,
        `make serve-features`). A customer's row is replaced only by values as of the same
        day or later, so backfilling old days never overwrites fresher values; a range of
        days is one write of each customer's newest row, in bounded batches. Retried with
        backoff when the store is locked or unreachable; one writer at a time on SQLite."""
        days = lake.input_files(context, CUSTOMER_FEATURES_KEY)
        written = feature_store.write_newest_of_days(CUSTOMER_FEATURES_VIEW, days)
        for key, files in days.items():
            rows = count_rows(files)
            context.add_asset_metadata(
                {
                    "dagster/row_count": rows,
                    "customers_written": written[key],
                    # superseded by a later day of the run, or fresher values already online
                    "kept_fresher": rows - written[key],
                },
                partition_key=key,
            )
        return dg.MaterializeResult(
            metadata={
                "feature_view": CUSTOMER_FEATURES_VIEW,
                "online_store": feature_store.store_name(),
            }
        )

    return [online_store]
