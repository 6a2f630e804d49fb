"""The Parquet lake: Hive-style partitions, written atomically and idempotently.

Layout (an interface: DuckDB, pandas and Spark users read it directly)::

    <root>/<zone>/<table>/date=YYYY-MM-DD/[hour=HH/]*.parquet

A partition is written into `<root>/_staging/<id>/` and then swapped into place in one
atomic exchange on the same filesystem, so a reader sees the old partition or the new one,
never a half-written one or none, and re-running a partition replaces it instead of
appending to it. Writers of the same table publish one at a time; file names are never
reused, and a replaced version is deleted only after a grace period.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.dataset as ds

ZONES = ("raw", "curated", "features", "quarantine", "models")


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 with RENAME_EXCHANGE). False where the
    kernel, libc or filesystem does not offer it; the caller then falls back to renames."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def part_file_name() -> str:
    """A file name no earlier version of a partition used: a reader that lists a partition
    and opens its files after a swap gets a clean 'not found', never a mix of versions."""
    return f"part-{uuid.uuid4().hex}.parquet"


class MissingPartitionError(FileNotFoundError):
    """An upstream partition the step needs is not in the lake."""


class LakeResource(dg.ConfigurableResource):
    """The lake's root directory and the rules for reading and writing its partitions."""

    root: str
    # How long a replaced partition version is kept for reads already under way.
    retired_grace_seconds: int = 300
    # A staging directory untouched this long belongs to a writer that died (kill -9, lost
    # node): the next write removes it. No partition write takes anywhere near a day.
    abandoned_staging_seconds: int = 86_400

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
        """A fresh directory beside the lake's zones, removed afterwards whatever happens
        (and, should the process die first, by a later write once it is abandoned)."""
        self._sweep_abandoned_staging()
        path = self.root_path / "_staging" / uuid.uuid4().hex
        path.mkdir(parents=True)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
            _remove_if_empty(path.parent)

    def publish(self, staged: Path, target: Path) -> None:
        """Swap a fully written directory into place as `target`.

        Publishers of the same table take turns (a file lock), the swap itself is one atomic
        exchange where the kernel offers it (Linux renameat2), so readers always find a whole
        partition, and the replaced version is kept `retired_grace_seconds` for reads that
        were already under way.
        """
        target.parent.mkdir(parents=True, exist_ok=True)
        with self._table_lock(target):
            if not target.exists():
                os.rename(staged, target)
            else:
                # named by its retirement time, for the grace period
                retired = self._trash_dir() / f"{time.time_ns()}-{uuid.uuid4().hex}"
                if _exchange(staged, target):
                    os.rename(staged, retired)  # `staged` now holds the old version
                else:
                    os.rename(target, retired)
                    os.rename(staged, target)
        self._empty_trash()

    def _trash_dir(self) -> Path:
        path = self.root_path / "_trash"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _sweep_abandoned_staging(self) -> None:
        cutoff = time.time() - self.abandoned_staging_seconds
        with suppress(FileNotFoundError):
            for staged in (self.root_path / "_staging").iterdir():
                with suppress(FileNotFoundError):
                    if staged.stat().st_mtime < cutoff:
                        shutil.rmtree(staged, ignore_errors=True)

    def _empty_trash(self) -> None:
        cutoff = time.time_ns() - self.retired_grace_seconds * 1_000_000_000
        for retired in self._trash_dir().iterdir():
            retired_at = retired.name.split("-", 1)[0]
            if retired_at.isdigit() and int(retired_at) <= cutoff:
                shutil.rmtree(retired, ignore_errors=True)

    @contextmanager
    def _table_lock(self, target: Path) -> Iterator[None]:
        zone, table = target.relative_to(self.root_path).parts[:2]
        locks = self.root_path / "_locks"
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / f"{zone}__{table}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

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
