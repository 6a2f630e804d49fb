"""Curated zone: validated purchases (Spark), with rejected lines in quarantine."""

from datetime import date
from pathlib import Path

import dagster as dg
from dagster_pyspark import LazyPySparkResource
from pyspark.sql import DataFrame, SparkSession

from shopsmart_assets.assets.raw import (
    CRM_CUSTOMERS_KEY,
    ORDER_ITEMS_KEY,
    ORDERS_KEY,
    SINGLE_RUN,
)
from shopsmart_assets.observability import count_rows, partition_metadata, summary_metadata
from shopsmart_assets.partitions import daily_partitions, day_of, hour_of, hourly_partitions
from shopsmart_assets.resources import LakeResource
from shopsmart_assets.transforms.purchases import purchase_lines, split_valid
from shopsmart_assets.workers import SPARK_STEP

PURCHASES_KEY = dg.AssetKey(["lake", "purchases"])
RECONCILES = "valid_plus_quarantined_equals_source"


def hours_of_day(day_key: str) -> list[tuple[date, int]]:
    """The hourly partitions (day, hour) inside a daily partition, DST days included."""
    window = daily_partitions.time_window_for_partition_key(day_key)
    keys = hourly_partitions.get_partition_keys_in_time_window(window)
    return [(day_of(k), hour_of(k)) for k in keys]


def read_lake(
    spark: SparkSession, lake: LakeResource, zone: str, table: str, paths: list[Path]
) -> DataFrame:
    """Read partitions with their Hive columns (date, hour) from the table's base path."""
    return spark.read.option("basePath", str(lake.table_dir(zone, table))).parquet(
        *[str(p) for p in paths]
    )


# No _SUCCESS markers in the lake: set on every write (all Spark writes go through
# write_daily), so that it holds on any Spark, Connect servers and clusters included.
NO_SUCCESS_MARKER = {"mapreduce.fileoutputcommitter.marksuccessfuljobs": "false"}


def write_daily(frame: DataFrame, staged: Path, days: list[date]) -> None:
    """Write a DataFrame partitioned by date, one file per day; days without rows get an
    empty file so that every partition of the run exists (and replaces what was there)."""
    frame.repartition("date").write.options(**NO_SUCCESS_MARKER).mode("overwrite").partitionBy(
        "date"
    ).parquet(str(staged))
    for day in days:
        directory = staged / f"date={day.isoformat()}"
        if not directory.is_dir():
            frame.drop("date").limit(0).coalesce(1).write.options(**NO_SUCCESS_MARKER).parquet(
                str(directory)
            )
    # Hadoop's local checksum files are no part of the lake contract.
    for checksum in staged.rglob(".*.crc"):
        checksum.unlink()


@dg.asset(
    key=PURCHASES_KEY,
    deps=[ORDERS_KEY, ORDER_ITEMS_KEY, CRM_CUSTOMERS_KEY],
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    **SPARK_STEP,
    group_name="lake",
    kinds={"spark", "parquet"},
    check_specs=[
        dg.AssetCheckSpec(
            RECONCILES,
            asset=PURCHASES_KEY,
            blocking=True,
            description="Every raw order line of the day is either a valid purchase or in "
            "quarantine: valid + quarantined = source rows, per partition.",
        )
    ],
)
def purchases(context: dg.AssetExecutionContext, pyspark: LazyPySparkResource, lake: LakeResource):
    """Order lines that passed validation, deduplicated (latest version of each order, one
    copy of each line), joined to their order and priced in US dollars (`amount_usd`).
    Lines that fail go to `quarantine/purchases` with a `reason`. Spark; a partition range
    runs as one Spark job."""
    keys = context.partition_keys
    days = [day_of(k) for k in keys]
    hours = [h for k in keys for h in hours_of_day(k)]
    needed_by = f"lake/purchases {keys[0]}..{keys[-1]}"
    order_paths = lake.require_partitions("raw", "orders", hours, needed_by)
    item_paths = lake.require_partitions("raw", "order_items", hours, needed_by)
    customer_paths = lake.require_partitions(
        "raw", "crm_customers", [(d, None) for d in days], needed_by
    )

    spark = pyspark.spark_session
    lines = purchase_lines(
        read_lake(spark, lake, "raw", "orders", order_paths),
        read_lake(spark, lake, "raw", "order_items", item_paths),
        read_lake(spark, lake, "raw", "crm_customers", customer_paths),
    ).cache()

    with lake.staging() as staging:
        yield from _write_reconcile_publish(context, lake, lines, keys, days, staging)


def _write_reconcile_publish(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    lines: DataFrame,
    keys: list[str],
    days: list[date],
    staging: Path,
):
    valid, quarantined = split_valid(lines)
    write_daily(valid, staging / "curated", days)
    write_daily(quarantined, staging / "quarantine", days)
    reasons: dict[date, dict[str, int]] = {d: {} for d in days}
    for row in quarantined.groupBy("date", "reason").count().collect():
        reasons[row["date"]][row["reason"]] = row["count"]
    lines.unpersist()

    # Reconcile before publishing: nothing reaches the lake unless every line is accounted for.
    balance = []
    for day, key in zip(days, keys, strict=True):
        source_rows = sum(
            count_rows(lake.partition_dir("raw", "order_items", d, h)) for d, h in hours_of_day(key)
        )
        valid_rows = count_rows(staging / "curated" / f"date={day}")
        quarantined_rows = count_rows(staging / "quarantine" / f"date={day}")
        balance.append((key, source_rows, valid_rows, quarantined_rows))
    unbalanced = [b for b in balance if b[1] != b[2] + b[3]]
    if unbalanced:
        key, src, ok, bad = unbalanced[0]
        raise RuntimeError(
            f"lake/purchases {key}: {src} source lines but {ok} valid + {bad} quarantined; "
            "nothing was published"
        )

    lake.publish_daily(staging / "curated", "curated", "purchases", days)
    lake.publish_daily(staging / "quarantine", "quarantine", "purchases", days)
    for key, source_rows, valid_rows, quarantined_rows in balance:
        day = day_of(key)
        context.add_asset_metadata(
            partition_metadata(
                valid_rows,
                lake.partition_dir("curated", "purchases", day),
                {
                    "source_rows": source_rows,
                    "quarantined_rows": quarantined_rows,
                    "quarantine_reasons": dg.MetadataValue.json(reasons[day]),
                },
            ),
            partition_key=key,
        )

    totals = [sum(b[i] for b in balance) for i in (1, 2, 3)]
    yield dg.MaterializeResult(
        metadata=summary_metadata(
            lake.partition_dir("curated", "purchases", days[-1]),
            totals[1],
            len(days),
            source_rows_total=totals[0],
            quarantined_rows_total=totals[2],
            quarantine_path=dg.MetadataValue.path(str(lake.table_dir("quarantine", "purchases"))),
        )
    )
    yield dg.AssetCheckResult(
        check_name=RECONCILES,
        passed=True,
        metadata={
            "source_rows": totals[0],
            "valid_rows": totals[1],
            "quarantined_rows": totals[2],
        },
    )
