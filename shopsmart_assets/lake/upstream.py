"""Which upstream partitions a partition reads: Dagster's own partition mappings, as each
asset declares them on its dependencies. A partition that is not in the lake stops the step
at once, naming it and the command that heals the gap."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from shopsmart_assets.partitions import day_of


def declared_mapping(spec: dg.AssetSpec, upstream: dg.AssetKey) -> dg.PartitionMapping:
    """The partition mapping an asset declares for a dependency (Dagster's default otherwise:
    the time windows that overlap)."""
    for dep in spec.deps:
        if dep.asset_key == upstream:
            return dep.partition_mapping or dg.TimeWindowPartitionMapping()
    raise KeyError(f"{spec.key.to_user_string()} does not depend on {upstream.to_user_string()}")


def upstream_partition_keys(
    mapping: dg.PartitionMapping,
    partitions_def: dg.PartitionsDefinition,
    upstream_partitions_def: dg.PartitionsDefinition,
    partition_keys: Sequence[str],
) -> list[str]:
    """The upstream partitions that these partitions read through `mapping` (partitions before
    the upstream's first are left out where the mapping allows it)."""
    result = mapping.get_upstream_mapped_partitions_result_for_partitions(
        partitions_def.subset_with_partition_keys(partition_keys),
        partitions_def,
        upstream_partitions_def,
    )
    return list(result.partitions_subset.get_partition_keys())


class MissingPartitionError(FileNotFoundError):
    """An upstream partition the step needs is not in the lake."""


def heal_command(first_missing: str, last_needed_by: str) -> str:
    """The command that builds the whole chain from the day of a missing partition to the day
    of the partition that needs it."""
    return f"shopsmart-backfill --from {day_of(first_missing)} --to {day_of(last_needed_by)}"


def missing_partition_failure(
    needed_by: str, upstream: dg.AssetKey, missing: Sequence[str], where: str, last: str
) -> dg.Failure:
    """The step's failure for upstream partitions that are not in the lake (`where`: the
    first one's path): waiting will not bring them, so no retries."""
    more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
    error = MissingPartitionError(
        f"{needed_by} needs {upstream.to_user_string()} partition {missing[0]}, which is not "
        f"in the lake ({where}){more}. Materialize it first: `{heal_command(missing[0], last)}` "
        "rebuilds the whole chain over those days (recovery_sensor launches that backfill by "
        "itself, with everything it needs)."
    )
    failure = dg.Failure(description=str(error), allow_retries=False)
    failure.__cause__ = error
    return failure
