"""Sensor-launched backfills: the one place this project uses Dagster outside its public API.

A sensor can ask the daemon for an asset backfill (one backfill over several assets and
partitions, ordered by their dependencies, each asset's range in one run under
`BackfillPolicy.single_run()`), but Dagster keeps the constructor private:
`RunRequest.for_asset_graph_subset` takes an `AssetGraphSubset`, which is not public API, and
the filter for listing backfills by status is not exported either. Both are wrapped here, so
an upgrade that changes them breaks this module and its test
(`test_backfill_requests.py`), nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus

PartitionsByAsset = Mapping[dg.AssetKey, tuple[dg.PartitionsDefinition, Sequence[str]]]


def backfill_request(partitions: PartitionsByAsset, tags: Mapping[str, str]) -> dg.RunRequest:
    """A sensor run request that the daemon turns into one asset backfill of exactly these
    partitions."""
    subsets = {
        key: partitions_def.subset_with_partition_keys(list(keys))
        for key, (partitions_def, keys) in partitions.items()
        if keys
    }
    return dg.RunRequest.for_asset_graph_subset(
        AssetGraphSubset(partitions_subsets_by_asset_key=subsets), tags=dict(tags)
    )


def backfill_in_progress(instance: dg.DagsterInstance, tag: str, values: Sequence[str]) -> bool:
    """Whether a backfill tagged `tag` with one of `values` is still requested (running)."""
    return bool(
        instance.get_backfills(
            filters=BulkActionsFilter(
                statuses=[BulkActionStatus.REQUESTED], tags={tag: list(values)}
            ),
            limit=1,
        )
    )
