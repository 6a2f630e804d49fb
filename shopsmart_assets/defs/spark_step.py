"""The Spark step: lake/purchases and features/customer_features in one Spark application.

Both assets are Spark work on the same data, one after the other. Computed in one step they
share one Spark session (one JVM, one step start) instead of paying for two; selected alone,
either runs alone (`can_subset`). The features still read the purchases from the lake after
they are published, never from memory, and a purchases check that fails stops the step
before any feature is computed.
"""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
from dagster_pyspark import LazyPySparkResource

from shopsmart_assets.defs.features.assets import (
    CUSTOMER_FEATURES_KEY,
    customer_features_spec,
    materialize_customer_features,
)
from shopsmart_assets.defs.lake.assets import (
    PURCHASES_KEY,
    PURCHASES_RECONCILES,
    materialize_purchases,
    purchases_spec,
)
from shopsmart_assets.defs.worker_pools import SINGLE_RUN, SPARK_STEP, source_retry
from shopsmart_assets.partitions import Partitions
from shopsmart_assets.resources import LakeResource, SourceDatabase

SPARK_STEP_NAME = "spark_transforms"


def build_spark_assets(partitions: Partitions) -> list[dg.AssetsDefinition]:
    """lake/purchases and features/customer_features, computed by one Spark step."""

    @dg.multi_asset(
        name=SPARK_STEP_NAME,
        specs=[purchases_spec(partitions), customer_features_spec(partitions)],
        check_specs=[PURCHASES_RECONCILES],
        can_subset=True,
        partitions_def=partitions.daily,
        backfill_policy=SINGLE_RUN,
        # It counts the orders source again: a source that blinks is retried like an extract.
        retry_policy=source_retry(),
        **SPARK_STEP,
    )
    def spark_transforms(
        context: dg.AssetExecutionContext,
        pyspark: LazyPySparkResource,
        lake: LakeResource,
        orders_db: SourceDatabase,
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        """Curated purchases, then the customer features, in one Spark session."""
        selected = context.selected_asset_keys
        # The session (a JVM, in local mode) starts while the raw zone is listed.
        with ThreadPoolExecutor(max_workers=1) as starter:
            session = starter.submit(lambda: pyspark.spark_session)
            if PURCHASES_KEY in selected:
                yield from materialize_purchases(context, session.result, lake, orders_db)
            if CUSTOMER_FEATURES_KEY in selected:
                yield materialize_customer_features(context, session.result(), lake)

    return [spark_transforms]
