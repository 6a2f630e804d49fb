"""Raw zone: source tables landed as Parquet, exactly as the sources hold them."""

from collections import Counter
from pathlib import Path
from typing import Any

import dagster as dg

from shopsmart_assets.defs.links import docs_link
from shopsmart_assets.defs.worker_pools import SINGLE_RUN, STANDARD_STEP, source_retry
from shopsmart_assets.lake import lake_table, part_file_name
from shopsmart_assets.partitions import Partitions
from shopsmart_assets.resources import LakeResource, SourceDatabase
from shopsmart_assets.sources.extract import (
    CRM_CUSTOMERS,
    CRM_INTERACTIONS,
    ORDER_ITEMS,
    ORDERS,
    Extraction,
    ExtractReport,
    SourceSchemaError,
    extract_to_parquet,
    window_params,
)

CRM_CUSTOMERS_KEY = dg.AssetKey(["raw", "crm_customers"])
CRM_INTERACTIONS_KEY = dg.AssetKey(["raw", "crm_interactions"])
ORDERS_KEY = dg.AssetKey(["raw", "orders"])
ORDER_ITEMS_KEY = dg.AssetKey(["raw", "order_items"])
EXTRACTIONS = {
    CRM_CUSTOMERS_KEY: CRM_CUSTOMERS,
    CRM_INTERACTIONS_KEY: CRM_INTERACTIONS,
    ORDERS_KEY: ORDERS,
    ORDER_ITEMS_KEY: ORDER_ITEMS,
}


def raw_table(key: dg.AssetKey) -> dict[str, Any]:
    """Definition metadata of a raw table: where it lies, its columns, its docs."""
    return {
        **lake_table("raw", EXTRACTIONS[key].raw_table),
        **docs_link("lake.md", "Raw tables: what the sources held, unreadable values included"),
    }


def extract_partitions(
    context: dg.AssetExecutionContext,
    source: SourceDatabase,
    lake: LakeResource,
    key: dg.AssetKey,
) -> dg.MaterializeResult:
    """Land every partition of the run's range, staged one by one and committed together
    (one Delta commit per table, per date for hourly tables): a range of hours makes a day's
    commit, not one commit an hour."""
    extraction: Extraction = EXTRACTIONS[key]
    partitions_def = context.assets_def.partitions_def
    engine = source.get_engine()
    unparsed: Counter = Counter()
    reports: dict[str, ExtractReport] = {}
    windows = {k: partitions_def.time_window_for_partition_key(k) for k in context.partition_keys}
    with lake.staging(context, key) as staging:
        staged: dict[str, Path] = {}
        for number, (partition_key, window) in enumerate(windows.items()):
            staged[partition_key] = staging / f"{number:06d}"
            staged[partition_key].mkdir()
            try:
                reports[partition_key] = extract_to_parquet(
                    engine,
                    extraction,
                    window_params(window.start, window.end),
                    staged[partition_key] / part_file_name(),
                    partition_key=partition_key,
                )
            except SourceSchemaError as drift:
                # A drifted source does not heal by waiting: fail now, without retries.
                raise dg.Failure(
                    description=f"{key.to_user_string()}: {drift}", allow_retries=False
                ) from drift
        # the commit records what the source held: the bottom of every partition's lineage
        lake.commit(
            context,
            key,
            staged,
            info={"source": f"{source.name}.{extraction.source_table}"},
            partition_info={k: {"source_rows": report.rows} for k, report in reports.items()},
        )
    for partition_key, report in reports.items():
        window = windows[partition_key]
        unparsed.update(report.unparsed)
        lake.record_partition(
            context,
            key,
            partition_key,
            {
                "window": f"{window.start.isoformat()} .. {window.end.isoformat()}",
                "unparsed_values": dg.MetadataValue.json(dict(report.unparsed)),
                "unparsed_values_count": sum(report.unparsed.values()),
            },
        )
        if report.unparsed:
            context.log.warning(
                f"{key.to_user_string()} {partition_key}: values kept as text because they do "
                f"not read as their column's type: {dict(report.unparsed)}; those rows will be "
                "quarantined"
            )
    total = sum(report.rows for report in reports.values())
    context.log.info(
        f"{key.to_user_string()}: {total:,} rows from {source.name}."
        f"{extraction.source_table} in {len(context.partition_keys)} partitions"
    )
    return lake.materialize_result(
        context,
        key,
        total,
        source=f"{source.name}.{extraction.source_table}",
        unparsed_values_total=sum(unparsed.values()),
    )


RAW_KINDS = {"sql", "deltalake"}


def crm_customers(
    context: dg.AssetExecutionContext, crm_db: SourceDatabase, lake: LakeResource
) -> dg.MaterializeResult:
    """Daily snapshot of the CRM's customers: everyone signed up by the end of the day,
    with the attributes the CRM holds at extraction time. Raw: unvalidated."""
    return extract_partitions(context, crm_db, lake, CRM_CUSTOMERS_KEY)


def crm_interactions(
    context: dg.AssetExecutionContext, crm_db: SourceDatabase, lake: LakeResource
) -> dg.MaterializeResult:
    """CRM interactions (support tickets, newsletter clicks, reviews, complaints) that
    occurred during the day. Raw: unvalidated."""
    return extract_partitions(context, crm_db, lake, CRM_INTERACTIONS_KEY)


def orders(context: dg.AssetExecutionContext, orders_db: SourceDatabase, lake: LakeResource):
    """Hourly incremental extraction of orders and their items, one step per run."""
    yield extract_partitions(context, orders_db, lake, ORDERS_KEY)
    yield extract_partitions(context, orders_db, lake, ORDER_ITEMS_KEY)


def raw_spec(key: dg.AssetKey, description: str) -> dg.AssetSpec:
    return dg.AssetSpec(key, description=description, metadata=raw_table(key), kinds=RAW_KINDS)


def build_raw_assets(partitions: Partitions) -> list[dg.AssetsDefinition]:
    """The extracts: the CRM daily, the orders hourly. Every extract retries a source that
    blinks, and a range of partitions is one run."""

    def step(partitions_def: dg.PartitionsDefinition) -> dict:
        return {
            "partitions_def": partitions_def,
            "backfill_policy": SINGLE_RUN,
            "retry_policy": source_retry(),
            "group_name": "raw",
            **STANDARD_STEP,
        }

    daily = [
        dg.asset(key=key, metadata=raw_table(key), kinds=RAW_KINDS, **step(partitions.daily))(fn)
        for key, fn in (
            (CRM_CUSTOMERS_KEY, crm_customers),
            (CRM_INTERACTIONS_KEY, crm_interactions),
        )
    ]
    hourly = dg.multi_asset(
        specs=[
            raw_spec(
                ORDERS_KEY,
                "Order headers placed during the hour, every version and duplicate the orders "
                "system holds. Raw: unvalidated.",
            ),
            raw_spec(
                ORDER_ITEMS_KEY,
                "The order lines of the hour's orders, as the orders system holds them. Raw: "
                "unvalidated.",
            ),
        ],
        **step(partitions.hourly),
    )(orders)
    return [*daily, hourly]
