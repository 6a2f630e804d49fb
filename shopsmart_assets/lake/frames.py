"""Partitions as data: Spark writes of daily partitions into a staging directory (published
by the caller once checked), and DuckDB held to a memory limit for queries over whole
partitions (a step reads a partition into pandas a batch at a time, never whole)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from shopsmart_assets.lake.metadata import PartitionData, dataset, parquet_files

if TYPE_CHECKING:
    import duckdb
    from pyspark.sql import DataFrame

# No _SUCCESS markers in the lake, whichever Spark (local, Connect, cluster) writes.
NO_SUCCESS_MARKER = {"mapreduce.fileoutputcommitter.marksuccessfuljobs": "false"}
# DuckDB's memory in a step's queries over whole partitions (each customer's newest row, the
# scores' checks and quantiles); beyond it, it spills to a temporary directory.
DUCKDB_MEMORY = "1GB"
# Rows of a partition a step holds at once when it reads one with pandas (`batches`).
READ_BATCH_ROWS = 100_000


def batches(data: PartitionData, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
    """A partition's rows, READ_BATCH_ROWS at a time, in file order."""
    for batch in dataset(data).to_batches(columns=columns, batch_size=READ_BATCH_ROWS):
        yield batch.to_pandas()


def partition_files(data: PartitionData) -> list[str]:
    """A partition's Parquet files, for DuckDB's read_parquet([...])."""
    return [str(f) for f in parquet_files(data)]


@contextmanager
def bounded_duckdb(memory: str = DUCKDB_MEMORY) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB connection held to `memory` (spilling to a temporary directory,
    removed afterwards), two threads."""
    import duckdb

    with tempfile.TemporaryDirectory(prefix="shopsmart-duckdb-") as spill:
        connection = duckdb.connect(
            config={
                "memory_limit": memory,
                "temp_directory": spill,
                "threads": 2,
                "preserve_insertion_order": False,
            }
        )
        try:
            yield connection
        finally:
            connection.close()


def write_daily_frames(
    frames: Mapping[str | None, DataFrame], staging: Path, day_keys: Sequence[str]
) -> dict[str | None, dict[str, Path]]:
    """Write Spark DataFrames with a `date` column (by role: None for the asset's own table)
    into `staging`, one directory per day of `day_keys`; a day without rows gets an empty
    file, so that it replaces what was there. Returns the staged directory of each (role,
    day)."""
    staged: dict[str | None, dict[str, Path]] = {}
    for role, frame in frames.items():
        base = staging / (role or "table")
        # Every task writes its share of each day: no shuffle funnelling a day's rows
        # through one task (a few files per partition, written in parallel).
        frame.write.options(**NO_SUCCESS_MARKER).mode("overwrite").partitionBy("date").parquet(
            str(base)
        )
        staged[role] = {}
        for day in day_keys:
            directory = base / f"date={day}"
            if not directory.is_dir():
                frame.drop("date").limit(0).coalesce(1).write.options(**NO_SUCCESS_MARKER).parquet(
                    str(directory)
                )
            staged[role][day] = directory
        # Hadoop's local checksum files are no part of the lake contract.
        for checksum in base.rglob(".*.crc"):
            checksum.unlink()
    return staged
