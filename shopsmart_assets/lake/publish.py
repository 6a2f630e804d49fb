"""Atomic, idempotent partition writes: stage beside the lake, then swap into place.

A partition is written completely into `<root>/_staging/<id>/` and swapped into place in one
atomic exchange on the same file system (Linux renameat2 with RENAME_EXCHANGE; two renames
where the kernel or file system lacks it), so a reader finds the old version or the new one,
never part of one and never none, and re-running a partition replaces it instead of
appending to it. Writers of the same table publish one at a time (a lock file per table); a
replaced version is kept a grace period for reads already under way, then deleted; staging a
dead writer left is swept once it is abandoned.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from shopsmart_assets.lake.locks import exclusive

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
STAGING, TRASH, LOCKS = "_staging", "_trash", "_locks"


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 with RENAME_EXCHANGE). False where the
    kernel, libc or file system does not offer it; the caller then falls back to renames."""
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


@dataclass(frozen=True)
class Publisher:
    """Staging and publishing under a lake root."""

    root: Path
    # How long a replaced partition version is kept for reads already under way.
    retired_grace_seconds: int = 300
    # A staging directory untouched this long belongs to a writer that died (kill -9, lost
    # node): the next write removes it. No partition write takes anywhere near that long.
    abandoned_staging_seconds: int = 86_400

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh directory beside the lake's zones, removed afterwards whatever happens
        (and, should the process die first, by a later write once it is abandoned)."""
        self._sweep_abandoned_staging()
        path = self.root / STAGING / uuid.uuid4().hex
        for attempt in range(10):
            try:
                path.mkdir(parents=True)
                break
            except FileNotFoundError:  # another writer removed the empty _staging meanwhile
                if attempt == 9:
                    raise
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
            with suppress(OSError):
                path.parent.rmdir()  # when empty

    def publish(self, staged: Path, target: Path) -> None:
        """Swap a fully written directory into place as `target`: publishers of the same
        table take turns, the swap is one atomic exchange, and the replaced version is kept
        `retired_grace_seconds` for reads that were already under way."""
        target.parent.mkdir(parents=True, exist_ok=True)
        with exclusive(self._lock_file(target)):
            if not target.exists():
                os.rename(staged, target)
            else:
                # named by its retirement time, for the grace period
                retired = self._trash_dir() / f"{time.time_ns()}-{uuid.uuid4().hex}"
                if exchange(staged, target):
                    os.rename(staged, retired)  # `staged` now holds the old version
                else:
                    os.rename(target, retired)
                    os.rename(staged, target)
        self._empty_trash()

    def _lock_file(self, target: Path) -> Path:
        zone, table = target.relative_to(self.root).parts[:2]
        return self.root / LOCKS / f"{zone}__{table}.lock"

    def _trash_dir(self) -> Path:
        path = self.root / TRASH
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _sweep_abandoned_staging(self) -> None:
        cutoff = time.time() - self.abandoned_staging_seconds
        with suppress(FileNotFoundError):
            for staged in (self.root / STAGING).iterdir():
                with suppress(FileNotFoundError):
                    if staged.stat().st_mtime < cutoff:
                        shutil.rmtree(staged, ignore_errors=True)

    def _empty_trash(self) -> None:
        cutoff = time.time_ns() - self.retired_grace_seconds * 1_000_000_000
        for retired in self._trash_dir().iterdir():
            retired_at = retired.name.split("-", 1)[0]
            if retired_at.isdigit() and int(retired_at) <= cutoff:
                shutil.rmtree(retired, ignore_errors=True)
