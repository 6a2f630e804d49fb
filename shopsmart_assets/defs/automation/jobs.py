"""The two jobs the schedules and sensors run: the hourly extraction and the daily chain, over
the assets the definitions partition hourly and daily."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dagster as dg

from shopsmart_assets.defs.asset_graph import DeclaredAssetGraph
from shopsmart_assets.partitions import Partitions

# Dagster's documented run tags for one run over a range of partitions (single-run backfills).
PARTITION_RANGE_START = "dagster/asset_partition_range_start"
PARTITION_RANGE_END = "dagster/asset_partition_range_end"


def range_tags(first: str, last: str) -> dict[str, str]:
    """Run tags that make one run cover partitions first..last."""
    return {PARTITION_RANGE_START: first, PARTITION_RANGE_END: last}


@dataclass(frozen=True)
class ChainJobs:
    """The jobs, and the assets of each (the hourly extracts, the daily chain)."""

    hourly: Any  # unresolved asset jobs: resolved by Definitions
    daily: Any
    hourly_keys: list[dg.AssetKey]
    daily_keys: list[dg.AssetKey]


def chain_jobs(partitions: Partitions, graph: DeclaredAssetGraph) -> ChainJobs:
    hourly_keys = graph.partitioned_by(partitions.hourly)
    daily_keys = graph.partitioned_by(partitions.daily)
    return ChainJobs(
        hourly=dg.define_asset_job(
            "hourly_orders_job",
            selection=dg.AssetSelection.assets(*hourly_keys),
            description="Extract orders and order items of an hour (or a range of hours) into "
            "the raw zone.",
        ),
        daily=dg.define_asset_job(
            "daily_chain_job",
            # with the assets' checks: reconciliation, the promotion bar, freshness
            selection=dg.AssetSelection.assets(*daily_keys),
            description="The daily chain: CRM extract, purchases (Spark), features (Spark), "
            "online store, training set, model and champion, for one day or a range.",
        ),
        hourly_keys=hourly_keys,
        daily_keys=daily_keys,
    )
