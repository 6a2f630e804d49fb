"""The Parquet lake: Hive-style partitions, written atomically and idempotently.

Layout (an interface: DuckDB, pandas and Spark users read it directly)::

    <root>/<zone>/<table>/date=YYYY-MM-DD/[hour=HH/]*.parquet

A partition is written into `<root>/_staging/<id>/` and then swapped into place with two
renames on one filesystem (the old partition moved aside, the new one moved in), so a reader
sees the old partition or the new one, never a half-written one, and re-running a partition
replaces it instead of appending to it.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.dataset as ds

ZONES = ("raw", "curated", "features", "quarantine", "models")


class MissingPartitionError(FileNotFoundError):
    """An upstream partition the step needs is not in the lake."""


class LakeResource(dg.ConfigurableResource):
    """The lake's root directory and the rules for reading and writing its partitions."""

    root: str

    @property
    def root_path(self) -> Path:
        return Path(self.root)

    def table_dir(self, zone: str, table: str) -> Path:
        if zone not in ZONES:
            raise ValueError(f"unknown lake zone {zone!r}; zones are {', '.join(ZONES)}")
        return self.root_path / zone / table

    def partition_dir(self, zone: str, table: str, day: date, hour: int | None = None) -> Path:
        if not isinstance(day, date):
            raise TypeError(f"partition day must be a date, got {day!r}")
        path = self.table_dir(zone, table) / f"date={day.isoformat()}"
        if hour is not None:
            if not 0 <= int(hour) <= 23:
                raise ValueError(f"partition hour must be 0..23, got {hour!r}")
            path = path / f"hour={int(hour):02d}"
        return path

    def has_partition(self, zone: str, table: str, day: date, hour: int | None = None) -> bool:
        return self.partition_dir(zone, table, day, hour).is_dir()

    def require_partitions(
        self, zone: str, table: str, partitions: Iterable[tuple[date, int | None]], needed_by: str
    ) -> list[Path]:
        """The directories of these partitions, or an error naming the first missing one."""
        paths = []
        for day, hour in partitions:
            path = self.partition_dir(zone, table, day, hour)
            if not path.is_dir():
                where = day.isoformat() + ("" if hour is None else f" hour {hour:02d}")
                raise MissingPartitionError(
                    f"{needed_by} needs {zone}/{table} for {where}, which is not in the lake "
                    f"({path}). Materialize the upstream asset for that partition first."
                )
            paths.append(path)
        return paths

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh directory beside the lake's zones, removed afterwards whatever happens."""
        path = self.root_path / "_staging" / uuid.uuid4().hex
        path.mkdir(parents=True)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
            _remove_if_empty(path.parent)

    def publish(self, staged: Path, target: Path) -> None:
        """Swap a fully written directory into place as `target`."""
        target.parent.mkdir(parents=True, exist_ok=True)
        trash = None
        if target.exists():
            trash = self.root_path / "_trash" / uuid.uuid4().hex
            trash.parent.mkdir(parents=True, exist_ok=True)
            os.rename(target, trash)
        os.rename(staged, target)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)

    @contextmanager
    def writing_partition(
        self, zone: str, table: str, day: date, hour: int | None = None
    ) -> Iterator[Path]:
        """Yield an empty directory to write one partition into; publish it on success."""
        with self.staging() as staged:
            yield staged
            self.publish(staged, self.partition_dir(zone, table, day, hour))

    def publish_daily(self, staged_root: Path, zone: str, table: str, days: Iterable[date]) -> None:
        """Publish `date=…` directories written under `staged_root` (e.g. by Spark's
        partitionBy), one atomic swap per day. Every day must have been written."""
        for day in days:
            staged = staged_root / f"date={day.isoformat()}"
            if not staged.is_dir():
                raise FileNotFoundError(f"{zone}/{table}: nothing was staged for {day}")
            self.publish(staged, self.partition_dir(zone, table, day))

    def read_daily(
        self, zone: str, table: str, days: Iterable[date], columns: list[str] | None = None
    ) -> pd.DataFrame:
        """Read daily partitions (only `columns`, if given) with pandas, adding `date`."""
        frames = []
        for day in days:
            path = self.partition_dir(zone, table, day)
            frame = ds.dataset(path, format="parquet").to_table(columns=columns).to_pandas()
            frame.insert(0, "date", day)
            frames.append(frame)
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True)


def _remove_if_empty(path: Path) -> None:
    with suppress(OSError):
        path.rmdir()
