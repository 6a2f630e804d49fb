"""The lake as a Dagster resource: the one partition-aware layer between the assets and their
files. Assets read their inputs, transform and return through it:

- where a partition lives comes from the asset's declared table and partitions (paths.py);
- which upstream partitions a step reads comes from the asset's partition mappings
  (upstream.py), and a missing one stops the step, named;
- writes are staged and swapped into place atomically (publish.py); a lake whose storage
  refuses them fails the step at once, in one line (storage_failures.py);
- every materialization records rows, path, schema and a preview (metadata.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from shopsmart_assets.lake.column_catalog import column_schema, written_schema
from shopsmart_assets.lake.frames import write_daily_frames
from shopsmart_assets.lake.metadata import (
    column_schema_key,
    count_rows,
    file_schema,
    partition_metadata,
    summary_metadata,
)
from shopsmart_assets.lake.paths import partition_subpath, table_id, table_location
from shopsmart_assets.lake.publish import Publisher
from shopsmart_assets.lake.storage_failures import storage_failures
from shopsmart_assets.lake.upstream import (
    declared_mapping,
    missing_partition_failure,
    upstream_partition_keys,
)
from shopsmart_assets.lake.versions import PartitionVersions, combined_version, version_of

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


class LakeResource(dg.ConfigurableResource):
    """The lake's root directory and the rules for reading and writing its partitions."""

    root: str
    # Asset key → "<zone>/<table>", derived from the assets' definition metadata (lake_tables).
    tables: dict[str, str] = {}
    # A staging directory untouched this long belongs to a writer that died (kill -9, lost
    # node): the next write removes it. No partition write takes anywhere near a day.
    abandoned_staging_seconds: int = 86_400

    @property
    def root_path(self) -> Path:
        return Path(self.root)

    @property
    def publisher(self) -> Publisher:
        return Publisher(self.root_path, self.abandoned_staging_seconds)

    # Paths -------------------------------------------------------------------------------

    def table_dir(self, key: dg.AssetKey, role: str | None = None) -> Path:
        location = self.tables.get(table_id(key, role))
        if location is None:
            raise KeyError(f"{table_id(key, role)} has no lake table (lake_table metadata)")
        return self.root_path / table_location(*location.split("/", 1))

    def partition_path(
        self,
        key: dg.AssetKey,
        partitions_def: dg.PartitionsDefinition,
        partition_key: str,
        role: str | None = None,
    ) -> Path:
        return self.table_dir(key, role) / partition_subpath(partitions_def, partition_key)

    def roles(self, key: dg.AssetKey) -> list[str | None]:
        """The tables an asset writes: None for its own, then the others by role."""
        prefix = table_id(key) + "#"
        return [None, *(t.removeprefix(prefix) for t in self.tables if t.startswith(prefix))]

    # Reading in a step: upstream partitions from Dagster's partition mappings ---------------

    def upstream_keys(
        self,
        context: dg.AssetExecutionContext,
        upstream: dg.AssetKey,
        for_partitions: Sequence[str] | None = None,
    ) -> list[str]:
        """The partitions of `upstream` that the step's partitions (or `for_partitions` of
        them) read, as the asset's declared partition mapping says."""
        if for_partitions is None:
            return list(context.asset_partition_keys_for_input(_input_name(context, upstream)))
        spec = next(
            s for s in context.assets_def.specs if any(d.asset_key == upstream for d in s.deps)
        )
        return upstream_partition_keys(
            declared_mapping(spec, upstream),
            context.assets_def.partitions_def,
            self.upstream_partitions_def(context, upstream),
            for_partitions,
        )

    def upstream_partitions_def(
        self, context: dg.AssetExecutionContext, upstream: dg.AssetKey
    ) -> dg.PartitionsDefinition:
        return context.op_execution_context.asset_partitions_def_for_input(
            _input_name(context, upstream)
        )

    def input_paths(
        self,
        context: dg.AssetExecutionContext,
        upstream: dg.AssetKey,
        for_partitions: Sequence[str] | None = None,
    ) -> dict[str, Path]:
        """The directories of the upstream partitions the step reads, by partition key; a
        missing one stops the step at once (no retries), named with what heals it."""
        partitions_def = self.upstream_partitions_def(context, upstream)
        own = for_partitions or context.partition_keys
        paths = {
            key: self.partition_path(upstream, partitions_def, key)
            for key in self.upstream_keys(context, upstream, for_partitions)
        }
        missing = [key for key, path in paths.items() if not path.is_dir()]
        if missing:
            needed_by = f"{_names(context)} {_span(own)}"
            raise missing_partition_failure(
                needed_by, upstream, missing, str(paths[missing[0]]), own[-1]
            )
        return paths

    def read_spark(
        self, context: dg.AssetExecutionContext, spark: SparkSession, upstream: dg.AssetKey
    ) -> DataFrame:
        """The upstream partitions the step reads, as one Spark DataFrame with the Hive
        columns (`date`, and `hour` for hourly tables)."""
        paths = self.input_paths(context, upstream).values()
        return spark.read.option("basePath", str(self.table_dir(upstream))).parquet(
            *[str(p) for p in paths]
        )

    # Writing in a step ---------------------------------------------------------------------

    @contextmanager
    def staging(
        self,
        context: dg.AssetExecutionContext,
        key: dg.AssetKey,
        partition_keys: Sequence[str] | None = None,
    ) -> Iterator[Path]:
        """A fresh staging directory for a step writing `key` (its partitions, or
        `partition_keys` of them), removed afterwards; a full, read-only or forbidden lake
        fails the step at once, in one line."""
        what = f"{table_id(key)} {_span(partition_keys or context.partition_keys)}"
        with (
            storage_failures(what, self.table_dir(key), self.root_path),
            self.publisher.staging() as path,
        ):
            yield path

    @contextmanager
    def writing(
        self, context: dg.AssetExecutionContext, key: dg.AssetKey, partition_key: str
    ) -> Iterator[Path]:
        """An empty directory to write one partition of `key` into; published on success."""
        target = self.partition_path(key, _own_partitions_def(context, key), partition_key)
        with self.staging(context, key, [partition_key]) as staged:
            yield staged
            self.publisher.publish(staged, target, partition_key, context.run.run_id)

    def write_spark_daily(
        self,
        context: dg.AssetExecutionContext,
        frames: Mapping[str | None, DataFrame],
        staging: Path,
    ) -> dict[str | None, dict[str, Path]]:
        """Stage Spark DataFrames with a `date` column (the asset's table, and others by
        role), one directory per partition of the step; publish them with `publish_staged`
        once they are checked."""
        return write_daily_frames(frames, staging, context.partition_keys)

    def publish_staged(
        self,
        context: dg.AssetExecutionContext,
        key: dg.AssetKey,
        staged: Mapping[str | None, Mapping[str, Path]],
    ) -> None:
        """Publish staged partitions, one atomic swap each."""
        partitions_def = _own_partitions_def(context, key)
        for role, by_partition in staged.items():
            for partition_key, directory in by_partition.items():
                target = self.partition_path(key, partitions_def, partition_key, role)
                self.publisher.publish(directory, target, partition_key, context.run.run_id)

    # Metadata ------------------------------------------------------------------------------

    def record_partition(
        self,
        context: dg.AssetExecutionContext,
        key: dg.AssetKey,
        partition_key: str,
        extra: Mapping[str, Any] | None = None,
    ) -> int:
        """Attach the standard metadata to one partition's materialization (its rows, counted
        from the Parquet footers, and its path); returns the rows."""
        path = self.partition_path(key, _own_partitions_def(context, key), partition_key)
        rows = count_rows(path)
        version = {"lake_version": version_of(path, self.root_path)}
        context.add_asset_metadata(
            partition_metadata(rows, path, {**version, **(extra or {})}),
            asset_key=key,
            partition_key=partition_key,
        )
        return rows

    def data_version(self, context: dg.AssetExecutionContext, key: dg.AssetKey) -> dg.DataVersion:
        """The data version Dagster records for the step's materialization of `key`: the
        partition's lake version; for a range of partitions (Dagster records one data version
        per step), a digest of theirs (each partition's own is in its `lake_version`)."""
        partitions_def = _own_partitions_def(context, key)
        versions = {
            partition_key: self.version(key, partitions_def, partition_key)
            for partition_key in context.partition_keys
        }
        return dg.DataVersion(combined_version(versions))

    def version(
        self, key: dg.AssetKey, partitions_def: dg.PartitionsDefinition, partition_key: str
    ) -> str:
        """The lake version id a partition holds now."""
        return version_of(self.partition_path(key, partitions_def, partition_key), self.root_path)

    def recorded_version_path(
        self,
        key: dg.AssetKey,
        partitions_def: dg.PartitionsDefinition,
        partition_key: str,
        version: str,
    ) -> Path | None:
        """Where a recorded version of a partition lies now: the current partition if it is
        that version, else its kept copy in the version store; None if the lake holds it no
        more."""
        current = self.partition_path(key, partitions_def, partition_key)
        versions = PartitionVersions.of(self.root_path, current)
        held = versions.current()
        if held is not None and held.version == version:
            return current
        kept = versions.kept_dir(version)
        return kept if kept.is_dir() else None

    def summary(
        self, context: dg.AssetExecutionContext, key: dg.AssetKey, rows_total: int, **extra: Any
    ) -> dict[str, Any]:
        """Run-level metadata: totals, the schemas of the tables the asset writes (their
        columns as the newest partition's files hold them, described) and a preview of the
        newest partition."""
        partitions_def = _own_partitions_def(context, key)
        newest = context.partition_keys[-1]
        schemas = {
            column_schema_key(role): written_schema(
                file_schema(self.partition_path(key, partitions_def, newest, role)),
                column_schema(self.tables[table_id(key, role)]),
            )
            for role in self.roles(key)
        }
        return summary_metadata(
            self.partition_path(key, partitions_def, newest),
            rows_total,
            len(context.partition_keys),
            schemas,
            **extra,
        )


def _input_name(context: dg.AssetExecutionContext, upstream: dg.AssetKey) -> str:
    for name, key in context.assets_def.keys_by_input_name.items():
        if key == upstream:
            return name
    raise KeyError(
        f"{_names(context)} does not declare {upstream.to_user_string()} as a dependency"
    )


def _own_partitions_def(
    context: dg.AssetExecutionContext, key: dg.AssetKey
) -> dg.PartitionsDefinition:
    if key not in context.assets_def.keys:
        raise KeyError(f"{_names(context)} does not write {key.to_user_string()}")
    return context.assets_def.partitions_def


def _names(context: dg.AssetExecutionContext) -> str:
    return ", ".join(sorted(k.to_user_string() for k in context.assets_def.keys))


def _span(keys: Sequence[str]) -> str:
    return keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]}"
