"""Curated zone: validated purchases (Spark), with rejected lines in quarantine.

The asset is computed in the Spark step (assets/spark_step.py) with the customer features,
in one Spark application; this module holds its definition and what the step does for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from shopsmart_assets.defs.links import docs_link
from shopsmart_assets.defs.raw.assets import (
    CRM_CUSTOMERS_KEY,
    ORDER_ITEMS_KEY,
    ORDERS_KEY,
)
from shopsmart_assets.lake import lake_table
from shopsmart_assets.lake.metadata import count_rows, fraction, value_counts
from shopsmart_assets.partitions import Partitions
from shopsmart_assets.resources import LakeResource, SourceDatabase
from shopsmart_assets.sources.extract import ORDER_ITEMS, ORDERS
from shopsmart_assets.sources.reconciliation import HourCount, count_hours, describe_mismatches
from shopsmart_assets.transforms.purchases import purchase_lines, split_valid

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

PURCHASES_KEY = dg.AssetKey(["lake", "purchases"])
QUARANTINE = "quarantine"  # the asset's second table: quarantine/purchases
RECONCILES = "valid_plus_quarantined_equals_source"
RAW_INPUTS = (ORDERS_KEY, ORDER_ITEMS_KEY, CRM_CUSTOMERS_KEY)
# Up to this many orders in a step, the CRM is looked up by broadcast (transforms/purchases.py,
# `known_customers`): about 2 days at 1M orders a day; bigger ranges join by shuffle.
BROADCAST_MAX_ORDERS = 2_000_000


def source_reconciliation(
    context: dg.AssetExecutionContext, lake: LakeResource, orders_db: SourceDatabase
) -> dict[str, list[HourCount]]:
    """Per day of the step, the source's and the raw zone's rows of each hour of orders and
    order lines, counted now."""
    counts: dict[str, list[HourCount]] = {}
    for day in context.partition_keys:
        day_counts: list[HourCount] = []
        for key, extraction in ((ORDERS_KEY, ORDERS), (ORDER_ITEMS_KEY, ORDER_ITEMS)):
            hourly = lake.upstream_partitions_def(context, key)
            files = lake.input_files(context, key, for_partitions=[day])
            windows = {hour: hourly.time_window_for_partition_key(hour) for hour in files}
            day_counts += count_hours(orders_db.get_engine(), extraction, windows, files)
        counts[day] = day_counts
    return counts


def purchases_spec(partitions: Partitions) -> dg.AssetSpec:
    """lake/purchases, computed by the Spark step (assets/spark_step.py)."""
    return dg.AssetSpec(
        PURCHASES_KEY,
        description="Order lines that passed validation, deduplicated (latest version of "
        "each order, one copy of each line), joined to their order and priced in US dollars "
        "(`amount_usd`). Lines that fail go to `quarantine/purchases` with the `reason` (the "
        "first rule they break) and, for values the source held unreadably, the source text. "
        "Reconciled with the source before anything is published. Spark; a range runs as one "
        "Spark job.",
        metadata={
            **lake_table("curated", "purchases", quarantine="quarantine/purchases"),
            **docs_link("lake.md", "Purchases and quarantine"),
        },
        deps=list(RAW_INPUTS),
        partitions_def=partitions.daily,
        group_name="lake",
        kinds={"spark", "deltalake"},
    )


PURCHASES_RECONCILES = dg.AssetCheckSpec(
    RECONCILES,
    asset=PURCHASES_KEY,
    blocking=True,
    description="Every order and order line the source holds for each hour of the day is in "
    "the raw zone (counted again in the source database), and every raw order line is either "
    "a valid purchase or in quarantine: valid + quarantined = source lines, per partition. "
    "Nothing is published otherwise.",
)


def raw_rows(context: dg.AssetExecutionContext, lake: LakeResource, key: dg.AssetKey) -> int:
    """Rows of the step's days in a raw table, from the Parquet footers."""
    return sum(count_rows(files) for files in lake.input_files(context, key).values())


def materialize_purchases(
    context: dg.AssetExecutionContext,
    spark: Callable[[], SparkSession],
    lake: LakeResource,
    orders_db: SourceDatabase,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """The step's days of lake/purchases: transform (transforms/purchases.py) and stage them
    while the source is counted again, then reconcile the raw zone with the source and the
    output with the raw lines, and publish. `spark` gives the session (it may be starting)."""
    orders = raw_rows(context, lake, ORDERS_KEY)
    with ThreadPoolExecutor(max_workers=1) as counter:
        # The source's count runs in a database, not in Spark: they overlap. Nothing is
        # published before it agrees with the raw zone.
        counting = counter.submit(source_reconciliation, context, lake, orders_db)
        session = spark()
        lines = purchase_lines(
            lake.read_spark(context, session, ORDERS_KEY),
            lake.read_spark(context, session, ORDER_ITEMS_KEY),
            lake.read_spark(context, session, CRM_CUSTOMERS_KEY),
            broadcast=orders <= BROADCAST_MAX_ORDERS,
        ).cache()
        try:
            with lake.staging(context, PURCHASES_KEY) as staging:
                yield from _write_reconcile_publish(context, lake, lines, counting.result, staging)
        finally:
            # the lines are written: their cache goes, and a warm Spark Connect server, which
            # outlives the step, keeps nothing of it whether the step succeeded or not
            lines.unpersist()


def _fail_unless_source_matches(
    counts: dict[str, list[HourCount]],
) -> Iterator[dg.AssetCheckResult]:
    """A day whose raw zone differs from the source fails the check and the step."""
    behind = {day: c for day, c in counts.items() if not all(h.matches for h in c)}
    if behind:
        day, day_counts = next(iter(behind.items()))
        yield dg.AssetCheckResult(
            asset_key=PURCHASES_KEY,
            check_name=RECONCILES,
            passed=False,
            description=f"the raw zone does not match the source for {', '.join(behind)}",
            metadata={"first_difference": describe_mismatches(day_counts)},
        )
        raise dg.Failure(
            description=f"lake/purchases {day}: the raw zone does not match the orders "
            f"source ({describe_mismatches(day_counts)}). Re-extract those hours "
            "(late_orders_sensor does it by itself); nothing was published.",
            allow_retries=False,
        )


@dataclass(frozen=True)
class DayBalance:
    """A day's source lines against what was staged: valid and quarantined lines."""

    source: int
    valid: int
    quarantined: int


def balance_of_days(
    context: dg.AssetExecutionContext,
    counts: dict[str, list[HourCount]],
    staged: dict[str | None, dict[str, Path]],
) -> dict[str, DayBalance]:
    """Every day's lines accounted for (valid + quarantined = source lines), or the step
    fails with nothing published."""
    balance = {}
    for day in context.partition_keys:
        day_balance = DayBalance(
            source=sum(c.source_rows for c in counts[day] if c.table == ORDER_ITEMS.raw_table),
            valid=count_rows(staged[None][day]),
            quarantined=count_rows(staged[QUARANTINE][day]),
        )
        if day_balance.source != day_balance.valid + day_balance.quarantined:
            raise RuntimeError(
                f"lake/purchases {day}: {day_balance.source} source lines but "
                f"{day_balance.valid} valid + {day_balance.quarantined} quarantined; nothing "
                "was published"
            )
        balance[day] = day_balance
    return balance


def record_days(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    balance: dict[str, DayBalance],
    reasons: dict[str, dict[str, int]],
) -> None:
    partitions_def = context.assets_def.partitions_def
    for day, day_balance in balance.items():
        quarantine = lake.partition_path(PURCHASES_KEY, partitions_def, day, QUARANTINE)
        lake.record_partition(
            context,
            PURCHASES_KEY,
            day,
            {
                "source_rows": day_balance.source,
                "quarantined_rows": day_balance.quarantined,
                "quarantined_share": fraction(day_balance.quarantined, day_balance.source),
                "quarantine_reasons": dg.MetadataValue.json(reasons[day]),
                "quarantine_path": dg.MetadataValue.path(str(quarantine)),
            },
        )


def _write_reconcile_publish(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    lines,
    source_counts: Callable[[], dict[str, list[HourCount]]],
    staging: Path,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    valid, quarantined = split_valid(lines)
    staged = lake.write_spark_daily(context, {None: valid, QUARANTINE: quarantined}, staging)
    # tallied from the staged quarantine files: a few thousand rows, no Spark job
    reasons = {day: value_counts(staged[QUARANTINE][day], "reason") for day in staged[QUARANTINE]}

    counts = source_counts()
    yield from _fail_unless_source_matches(counts)
    # Reconcile before publishing: nothing reaches the lake unless every line is accounted for.
    balance = balance_of_days(context, counts, staged)
    lake.publish_staged(context, PURCHASES_KEY, staged)
    record_days(context, lake, balance, reasons)

    source = sum(b.source for b in balance.values())
    ok = sum(b.valid for b in balance.values())
    bad = sum(b.quarantined for b in balance.values())
    quarantine_table = lake.table_dir(PURCHASES_KEY, QUARANTINE)
    yield lake.materialize_result(
        context,
        PURCHASES_KEY,
        ok,
        source_rows=source,
        quarantined_rows=bad,
        quarantine_table=dg.MetadataValue.path(str(quarantine_table)),
    )
    yield dg.AssetCheckResult(
        asset_key=PURCHASES_KEY,
        check_name=RECONCILES,
        passed=True,
        metadata={
            "source_rows": source,
            "valid_rows": ok,
            "quarantined_rows": bad,
            "source_hours_checked": sum(len(c) for c in counts.values()) // 2,
        },
    )
