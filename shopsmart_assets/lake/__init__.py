"""The lake layer: how an asset's partition becomes a path, which upstream partitions it
reads, Delta commits and provenance, storage failures, materialization metadata, and the
resource the assets use (docs/lake.md is the contract)."""

from shopsmart_assets.lake.paths import (
    LAKE_TABLE,
    ZONES,
    lake_table,
    lake_tables,
    part_file_name,
    partition_subpath,
)
from shopsmart_assets.lake.resource import LakeResource
from shopsmart_assets.lake.upstream import MissingPartitionError

__all__ = [
    "LAKE_TABLE",
    "ZONES",
    "LakeResource",
    "MissingPartitionError",
    "lake_table",
    "lake_tables",
    "part_file_name",
    "partition_subpath",
]
