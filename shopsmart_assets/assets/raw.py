"""Raw zone: source tables landed as Parquet, exactly as the sources hold them."""

from pathlib import Path

import dagster as dg

from shopsmart_assets.extract import (
    CRM_CUSTOMERS,
    CRM_INTERACTIONS,
    ORDER_ITEMS,
    ORDERS,
    Extraction,
    SourceSchemaError,
    extract_to_parquet,
    window_params,
)
from shopsmart_assets.observability import partition_metadata, summary_metadata
from shopsmart_assets.partitions import daily_partitions, day_of, hour_of, hourly_partitions
from shopsmart_assets.resources import LakeResource, SourceDatabase
from shopsmart_assets.resources.lake import part_file_name
from shopsmart_assets.workers import STANDARD_STEP

# Sources fail for passing reasons (restarts, network blips, lock timeouts): retry 3 times
# with exponential backoff and jitter, about 2 s, 6 s and 14 s later (each ± 2 s), before the
# step fails, the run fails and Slack is alerted.
SOURCE_RETRY = dg.RetryPolicy(
    max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
SINGLE_RUN = dg.BackfillPolicy.single_run()


def extract_partitions(
    context: dg.AssetExecutionContext,
    source: SourceDatabase,
    lake: LakeResource,
    extraction: Extraction,
    asset_key: dg.AssetKey,
) -> dg.MaterializeResult:
    """Land every partition of the run's range, one atomic partition write each."""
    partitions_def = context.assets_def.partitions_def
    hourly = partitions_def is hourly_partitions
    engine = source.get_engine()
    total, last_dir = 0, Path()
    for key in context.partition_keys:
        window = partitions_def.time_window_for_partition_key(key)
        day, hour = day_of(key), (hour_of(key) if hourly else None)
        try:
            with lake.writing_partition("raw", extraction.raw_table, day, hour) as staged:
                rows = extract_to_parquet(
                    engine,
                    extraction,
                    window_params(window.start, window.end),
                    staged / part_file_name(),
                    partition_key=key,
                )
        except SourceSchemaError as drift:
            # A drifted source does not heal by waiting: fail now, without retries.
            raise dg.Failure(
                description=f"{asset_key.to_user_string()}: {drift}", allow_retries=False
            ) from drift
        last_dir = lake.partition_dir("raw", extraction.raw_table, day, hour)
        total += rows
        context.add_asset_metadata(
            partition_metadata(
                rows,
                last_dir,
                {"window": f"{window.start.isoformat()} .. {window.end.isoformat()}"},
            ),
            asset_key=asset_key,
            partition_key=key,
        )
    context.log.info(
        f"{asset_key.to_user_string()}: {total:,} rows from {source.name}."
        f"{extraction.source_table} in {len(context.partition_keys)} partitions"
    )
    return dg.MaterializeResult(
        asset_key=asset_key,
        metadata=summary_metadata(
            last_dir,
            total,
            len(context.partition_keys),
            source=f"{source.name}.{extraction.source_table}",
        ),
    )


CRM_CUSTOMERS_KEY = dg.AssetKey(["raw", "crm_customers"])
CRM_INTERACTIONS_KEY = dg.AssetKey(["raw", "crm_interactions"])
ORDERS_KEY = dg.AssetKey(["raw", "orders"])
ORDER_ITEMS_KEY = dg.AssetKey(["raw", "order_items"])


@dg.asset(
    key=CRM_CUSTOMERS_KEY,
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    retry_policy=SOURCE_RETRY,
    group_name="raw",
    kinds={"sql", "parquet"},
    **STANDARD_STEP,
)
def crm_customers(
    context: dg.AssetExecutionContext, crm_db: SourceDatabase, lake: LakeResource
) -> dg.MaterializeResult:
    """Daily snapshot of the CRM's customers: everyone signed up by the end of the day,
    with the attributes the CRM holds at extraction time. Raw: unvalidated."""
    return extract_partitions(context, crm_db, lake, CRM_CUSTOMERS, CRM_CUSTOMERS_KEY)


@dg.asset(
    key=CRM_INTERACTIONS_KEY,
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    retry_policy=SOURCE_RETRY,
    group_name="raw",
    kinds={"sql", "parquet"},
    **STANDARD_STEP,
)
def crm_interactions(
    context: dg.AssetExecutionContext, crm_db: SourceDatabase, lake: LakeResource
) -> dg.MaterializeResult:
    """CRM interactions (support tickets, newsletter clicks, reviews, complaints) that
    occurred during the day. Raw: unvalidated."""
    return extract_partitions(context, crm_db, lake, CRM_INTERACTIONS, CRM_INTERACTIONS_KEY)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            ORDERS_KEY,
            description="Order headers placed during the hour, every version and duplicate "
            "the orders system holds. Raw: unvalidated.",
            kinds={"sql", "parquet"},
        ),
        dg.AssetSpec(
            ORDER_ITEMS_KEY,
            description="The order lines of the hour's orders, as the orders system holds "
            "them. Raw: unvalidated.",
            kinds={"sql", "parquet"},
        ),
    ],
    partitions_def=hourly_partitions,
    backfill_policy=SINGLE_RUN,
    retry_policy=SOURCE_RETRY,
    group_name="raw",
    **STANDARD_STEP,
)
def orders(context: dg.AssetExecutionContext, orders_db: SourceDatabase, lake: LakeResource):
    """Hourly incremental extraction of orders and their items, one step per run."""
    yield extract_partitions(context, orders_db, lake, ORDERS, ORDERS_KEY)
    yield extract_partitions(context, orders_db, lake, ORDER_ITEMS, ORDER_ITEMS_KEY)
