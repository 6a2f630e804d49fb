"""What the instance knows of the chain's partitions, for the schedules and sensors that
decide what to run: each asset's status per partition, and the partitions one of a group of
assets still lacks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import dagster as dg

Statuses = dict[dg.AssetKey, dict[str, dg.AssetPartitionStatus | None]]


def partition_statuses(
    instance: dg.DagsterInstance,
    keys: Iterable[dg.AssetKey],
    partitions_def: dg.PartitionsDefinition,
    partition_keys: Sequence[str],
) -> Statuses:
    """Each asset's status of each of these partitions (None: never attempted)."""
    return {
        key: dict(instance.get_status_by_partition(key, list(partition_keys), partitions_def) or {})
        for key in keys
    }


def incomplete(
    instance: dg.DagsterInstance,
    keys: Iterable[dg.AssetKey],
    partitions_def: dg.PartitionsDefinition,
    partition_keys: Sequence[str],
) -> list[str]:
    """The partitions, in order, that one of the assets has not materialized."""
    statuses = partition_statuses(instance, keys, partitions_def, partition_keys)
    done = dg.AssetPartitionStatus.MATERIALIZED
    return [k for k in partition_keys if any(s.get(k) != done for s in statuses.values())]
