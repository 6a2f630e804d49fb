"""The lake as a Dagster resource: the one partition-aware layer between the assets and their
tables. Assets read their inputs, transform and return through it:

- every table is a Delta table (delta.py); where a partition lives comes from the asset's
  declared table and partitions (paths.py);
- which upstream partitions a step reads comes from the asset's partition mappings
  (upstream.py), read from the tables' current versions; a missing one stops the step, named;
- writes are staged (staging.py) and committed as one overwrite of exactly the partitions
  written, recording which run wrote them and the versions of what it read (its provenance);
  a lake whose storage refuses them fails the step at once, in one line (storage_failures.py);
- every materialization records rows, path, schema, its table version and a preview
  (metadata.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import PrivateAttr

from shopsmart_assets.lake.delta import DeltaLakeTable, fingerprint
from shopsmart_assets.lake.frames import write_daily_frames
from shopsmart_assets.lake.legacy import refuse_legacy
from shopsmart_assets.lake.metadata import (
    PartitionData,
    column_schema_key,
    file_schema,
    parquet_files,
    partition_metadata,
    summary_metadata,
    written_schema,
)
from shopsmart_assets.lake.paths import (
    partition_columns,
    partition_subpath,
    table_id,
    table_location,
)
from shopsmart_assets.lake.staging import Staging
from shopsmart_assets.lake.storage_failures import storage_failures
from shopsmart_assets.lake.upstream import (
    declared_mapping,
    missing_partition_failure,
    upstream_partition_keys,
)

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
    # What each step read (table → version and each partition's fingerprint) and committed
    # (table id → partition key → (version, rows)), by step: a commit records the reads.
    _reads: dict[tuple[str, str], dict[str, dict]] = PrivateAttr(default_factory=dict)
    _commits: dict[tuple[str, str], dict[str, dict[str, tuple[int, int]]]] = PrivateAttr(
        default_factory=dict
    )

    @property
    def root_path(self) -> Path:
        return Path(self.root)

    # Tables and paths ----------------------------------------------------------------------

    def location(self, key: dg.AssetKey, role: str | None = None) -> str:
        """`<zone>/<table>` of an asset's table (or its table of `role`)."""
        location = self.tables.get(table_id(key, role))
        if location is None:
            raise KeyError(f"{table_id(key, role)} has no lake table (lake_table metadata)")
        return table_location(*location.split("/", 1))

    def table_dir(self, key: dg.AssetKey, role: str | None = None) -> Path:
        return self.root_path / self.location(key, role)

    def table(
        self,
        key: dg.AssetKey,
        partitions_def: dg.PartitionsDefinition,
        role: str | None = None,
    ) -> DeltaLakeTable:
        """The Delta table an asset writes (or its table of `role`); a lake of the release
        before Delta tables is refused, saying how to convert it."""
        refuse_legacy(self.root_path)
        return DeltaLakeTable(
            self.table_dir(key, role), partition_columns(partitions_def), self.location(key, role)
        )

    def partition_path(
        self,
        key: dg.AssetKey,
        partitions_def: dg.PartitionsDefinition,
        partition_key: str,
        role: str | None = None,
    ) -> Path:
        """The directory of a partition's files (it also holds files of older versions: read
        a partition through `partition_files`)."""
        return self.table_dir(key, role) / partition_subpath(partitions_def, partition_key)

    def partition_files(
        self,
        key: dg.AssetKey,
        partitions_def: dg.PartitionsDefinition,
        partition_keys: Sequence[str],
        role: str | None = None,
    ) -> dict[str, list[Path]]:
        """The files of those partitions in the table's current version (the partitions it
        does not hold are left out)."""
        table = self.table(key, partitions_def, role)
        held = table.state().files
        found = {}
        for partition_key in partition_keys:
            subpath = partition_subpath(partitions_def, partition_key)
            if subpath in held:
                found[partition_key] = [table.path / f for f in held[subpath]]
        return found

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

    def input_files(
        self,
        context: dg.AssetExecutionContext,
        upstream: dg.AssetKey,
        for_partitions: Sequence[str] | None = None,
    ) -> dict[str, list[Path]]:
        """The files of the upstream partitions the step reads (the upstream table's current
        version), by partition key; a missing partition stops the step at once (no retries),
        named with what heals it. What was read is recorded in the step's commits."""
        partitions_def = self.upstream_partitions_def(context, upstream)
        table = self.table(upstream, partitions_def)
        state = table.state()
        keys = self.upstream_keys(context, upstream, for_partitions)
        subpaths = {key: partition_subpath(partitions_def, key) for key in keys}
        missing = [key for key, subpath in subpaths.items() if subpath not in state.files]
        if missing:
            own = for_partitions or context.partition_keys
            where = str(table.path / subpaths[missing[0]])
            needed_by = f"{_names(context)} {_span(own)}"
            raise missing_partition_failure(needed_by, upstream, missing, where, own[-1])
        read = self._reads.setdefault(_step(context), {}).setdefault(
            table.name, {"version": state.version, "partitions": {}}
        )
        read["version"] = max(read["version"], state.version or 0)
        read["partitions"].update(
            {key: fingerprint(state.files[subpath]) for key, subpath in subpaths.items()}
        )
        return {key: [table.path / f for f in state.files[sub]] for key, sub in subpaths.items()}

    def read_of(self, context: dg.AssetExecutionContext, upstream: dg.AssetKey) -> dict[str, Any]:
        """What the step has read of `upstream`'s table so far: {"version": the table version,
        "partitions": partition key → the fingerprint of its files in it}."""
        partitions_def = self.upstream_partitions_def(context, upstream)
        name = self.table(upstream, partitions_def).name
        read = self._reads.get(_step(context), {}).get(name)
        if read is None:
            raise KeyError(f"{_names(context)} has not read {upstream.to_user_string()}")
        return read

    def read_spark(
        self, context: dg.AssetExecutionContext, spark: SparkSession, upstream: dg.AssetKey
    ) -> DataFrame:
        """The upstream partitions the step reads, as one Spark DataFrame with the Hive
        columns (`date`, and `hour` for hourly tables): the files of the table's current
        version, read with the table as Spark's base path."""
        files = [str(f) for listed in self.input_files(context, upstream).values() for f in listed]
        return spark.read.option("basePath", str(self.table_dir(upstream))).parquet(*files)

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
        staging = Staging(self.root_path, self.abandoned_staging_seconds)
        with (
            storage_failures(what, self.table_dir(key), self.root_path),
            staging.directory() as path,
        ):
            yield path

    @contextmanager
    def writing(
        self,
        context: dg.AssetExecutionContext,
        key: dg.AssetKey,
        partition_key: str,
    ) -> Iterator[Path]:
        """An empty directory to write one partition of `key` into; committed on success."""
        with self.writing_partitions(context, key, [partition_key]) as staged:
            yield staged[partition_key]

    @contextmanager
    def writing_partitions(
        self,
        context: dg.AssetExecutionContext,
        key: dg.AssetKey,
        partition_keys: Sequence[str] | None = None,
    ) -> Iterator[Mapping[str, Path]]:
        """An empty directory for each partition of `key` the step writes (or each of
        `partition_keys`), committed together on success: one Delta commit for the range."""
        keys = list(partition_keys or context.partition_keys)
        with self.staging(context, key, keys) as staging:
            staged = {partition_key: staging / f"{n:06d}" for n, partition_key in enumerate(keys)}
            for directory in staged.values():
                directory.mkdir()
            yield staged
            self.commit(context, key, staged)

    def write_spark_daily(
        self,
        context: dg.AssetExecutionContext,
        frames: Mapping[str | None, DataFrame],
        staging: Path,
    ) -> dict[str | None, dict[str, Path]]:
        """Stage Spark DataFrames with a `date` column (the asset's table, and others by
        role), one directory per partition of the step; commit them with `publish_staged`
        once they are checked."""
        return write_daily_frames(frames, staging, context.partition_keys)

    def publish_staged(
        self,
        context: dg.AssetExecutionContext,
        key: dg.AssetKey,
        staged: Mapping[str | None, Mapping[str, Path]],
    ) -> None:
        """Commit staged partitions: one commit per table (the asset's, and others by role)."""
        for role, by_partition in staged.items():
            self.commit(context, key, by_partition, role)

    def commit(
        self,
        context: dg.AssetExecutionContext,
        key: dg.AssetKey,
        staged: Mapping[str, PartitionData],
        role: str | None = None,
        info: Mapping[str, Any] | None = None,
        partition_info: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        """Commit staged partitions of `key`'s table (or its table of `role`), replacing
        exactly those partitions: one Delta commit, or one per date for an hourly table (a
        Delta partition filter is a conjunction). Each commit records the run, the asset, its
        partitions, what the step read so far (each table's version and partitions), `info`,
        and its partitions' own `partition_info` (partition → fields), as field → {partition:
        value}."""
        partitions_def = _own_partitions_def(context, key)
        table = self.table(key, partitions_def, role)
        files, by_subpath = {}, {}
        for partition_key, data in staged.items():
            listed = parquet_files(data)
            if not listed:
                raise ValueError(
                    f"{table_id(key, role)} {partition_key}: no Parquet file staged (a "
                    "partition without rows is one file without rows)"
                )
            subpath = partition_subpath(partitions_def, partition_key)
            files[subpath], by_subpath[subpath] = listed, partition_key
        committed = self._commits.setdefault(_step(context), {}).setdefault(table_id(key, role), {})
        for group in table.commit_groups(files):
            keys = sorted(by_subpath[s] for s in group)
            own = {k: (partition_info or {}).get(k, {}) for k in keys}
            fields = sorted({field for values in own.values() for field in values})
            record = {
                "run_id": context.run.run_id,
                "asset": table_id(key, role),
                "partitions": keys,
                "inputs": self._reads.get(_step(context), {}),
                **(info or {}),
                **{f: {k: values[f] for k, values in own.items() if f in values} for f in fields},
            }
            what = f"{table_id(key, role)} {_span(keys)}"
            with storage_failures(what, table.path, self.root_path):
                done = table.commit({s: files[s] for s in group}, record)
            committed |= {by_subpath[s]: (done.versions[s], n) for s, n in done.rows.items()}

    # Metadata ------------------------------------------------------------------------------

    def record_partition(
        self,
        context: dg.AssetExecutionContext,
        key: dg.AssetKey,
        partition_key: str,
        extra: Mapping[str, Any] | None = None,
    ) -> int:
        """Attach the standard metadata to one partition's materialization (its rows, its
        path and the table version the step's commit made); returns the rows."""
        partitions_def = _own_partitions_def(context, key)
        path = self.partition_path(key, partitions_def, partition_key)
        version, rows = self.committed(context, key, partition_key)
        context.add_asset_metadata(
            partition_metadata(rows, path, {"lake_version": version, **(extra or {})}),
            asset_key=key,
            partition_key=partition_key,
        )
        return rows

    def committed(
        self, context: dg.AssetExecutionContext, key: dg.AssetKey, partition_key: str
    ) -> tuple[int, int]:
        """(table version, rows) of a partition of `key` the step committed."""
        committed = self._commits.get(_step(context), {}).get(table_id(key), {})
        if partition_key not in committed:
            raise KeyError(f"{table_id(key)} {partition_key} was not committed by this step")
        return committed[partition_key]

    def data_version(self, context: dg.AssetExecutionContext, key: dg.AssetKey) -> dg.DataVersion:
        """The data version Dagster records for the step's materialization of `key`: the
        table version of the step's (newest) commit of it; each partition's own is in its
        `lake_version`."""
        committed = self._commits.get(_step(context), {}).get(table_id(key), {})
        if not committed:
            raise KeyError(f"{table_id(key)}: nothing committed by this step")
        return dg.DataVersion(str(max(version for version, _ in committed.values())))

    def materialize_result(
        self,
        context: dg.AssetExecutionContext,
        key: dg.AssetKey,
        rows_total: int | None = None,
        **extra: Any,
    ) -> dg.MaterializeResult:
        """The step's materialization of `key`, after its partitions were committed: the data
        version of its newest commit, and the run-level metadata (`summary`: totals, written
        schemas, a preview; only `extra` for the models zone's records, `rows_total` None)."""
        return dg.MaterializeResult(
            asset_key=key,
            data_version=self.data_version(context, key),
            metadata=extra
            if rows_total is None
            else self.summary(context, key, rows_total, **extra),
        )

    def summary(
        self, context: dg.AssetExecutionContext, key: dg.AssetKey, rows_total: int, **extra: Any
    ) -> dict[str, Any]:
        """Run-level metadata: totals, the schemas of the tables the asset writes (their
        columns as the newest partition's files hold them, described) and a preview of the
        newest partition."""
        partitions_def = _own_partitions_def(context, key)
        newest = context.partition_keys[-1]
        files = {
            role: self.partition_files(key, partitions_def, [newest], role).get(newest, [])
            for role in self.roles(key)
        }
        documented = context.assets_def.metadata_by_key[key]
        schemas = {
            column_schema_key(role): written_schema(
                file_schema(listed), documented.get(column_schema_key(role))
            )
            for role, listed in files.items()
            if listed
        }
        return summary_metadata(
            files[None], rows_total, len(context.partition_keys), schemas, **extra
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


def _step(context: dg.AssetExecutionContext) -> tuple[str, str]:
    """A step of a run: what the resource remembers of its reads and commits is its own."""
    return context.run.run_id, context.assets_def.node_def.name


def _names(context: dg.AssetExecutionContext) -> str:
    return ", ".join(sorted(k.to_user_string() for k in context.assets_def.keys))


def _span(keys: Sequence[str]) -> str:
    return keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]}"
