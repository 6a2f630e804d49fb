"""Atomic, idempotent partition writes: stage beside the lake, then swap into place.

A partition is written completely into `<root>/_staging/<id>/`, given its version and
manifest (versions.py), and swapped into place in one atomic exchange on the same file system
(Linux renameat2 with RENAME_EXCHANGE; two renames where the kernel or file system lacks it),
so a reader finds the old version or the new one, never part of one and never none, and
re-running a partition replaces it instead of appending to it. Writers of the same table
publish one at a time (a lock file per table); the version a publish replaces moves, whole,
into the version store (`_versions/`); staging a dead writer left is swept once abandoned.
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
from shopsmart_assets.lake.versions import Manifest, PartitionVersions

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
STAGING, LOCKS, RETIRED = "_staging", "_locks", "_retired"


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
    # A staging directory untouched this long belongs to a writer that died (kill -9, lost
    # node): the next write removes it. No partition write takes anywhere near that long.
    abandoned_staging_seconds: int = 86_400
    # A directory a swap replaced and nothing keeps (the same version published again) is
    # deleted this long after, not at once: a reader that listed it just before the swap still
    # opens every file it listed.
    retired_grace_seconds: float = 600

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh directory beside the lake's zones, removed afterwards whatever happens
        (and, should the process die first, by a later write once it is abandoned)."""
        self._sweep_abandoned_staging()
        self._sweep_retired()
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

    def publish(
        self,
        staged: Path,
        target: Path,
        partition_key: str | None = None,
        run_id: str | None = None,
    ) -> Manifest:
        """Swap a fully written directory into place as `target`, recording its version (its
        manifest: files, rows, when, which run). Publishers of the same table take turns, the
        swap is one atomic exchange, and the version it replaces moves into the version store
        (or goes, when it is the very same version). Returns the new manifest."""
        versions = PartitionVersions.of(self.root, target)
        manifest = versions.describe(staged, partition_key or versions.path, run_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        with exclusive(self._lock_file(versions.table)):
            versions.write_manifest(manifest)
            old = versions.current()
            if old is None:
                os.rename(staged, target)
            elif exchange(staged, target):
                self._retire(versions, staged, old, manifest)  # `staged` holds the old one
            else:
                replaced = staged.with_name(f"{staged.name}-replaced")
                os.rename(target, replaced)
                os.rename(staged, target)
                self._retire(versions, replaced, old, manifest)
            versions.set_current(manifest)
        return manifest

    def _retire(
        self, versions: PartitionVersions, old_directory: Path, old: Manifest, new: Manifest
    ) -> None:
        if old.version == new.version or versions.kept_dir(old.version).exists():
            self.retire(old_directory)
        else:
            versions.keep(old_directory, old)

    def retire(self, directory: Path) -> None:
        """Move a directory nobody needs any more out of the lake, to be deleted after the
        grace period (one rename: a reader holding it still finds its files)."""
        retired = self.root / RETIRED
        retired.mkdir(exist_ok=True)
        directory.rename(retired / f"{time.time_ns()}-{uuid.uuid4().hex[:8]}")

    def _sweep_retired(self) -> None:
        cutoff = time.time() - self.retired_grace_seconds
        with suppress(FileNotFoundError):
            for retired in (self.root / RETIRED).iterdir():
                with suppress(FileNotFoundError, ValueError):
                    if int(retired.name.split("-")[0]) / 1e9 < cutoff:
                        shutil.rmtree(retired, ignore_errors=True)

    def _lock_file(self, table: str) -> Path:
        return self.root / LOCKS / f"{table.replace('/', '__')}.lock"

    def _sweep_abandoned_staging(self) -> None:
        cutoff = time.time() - self.abandoned_staging_seconds
        with suppress(FileNotFoundError):
            for staged in (self.root / STAGING).iterdir():
                with suppress(FileNotFoundError):
                    if staged.stat().st_mtime < cutoff:
                        shutil.rmtree(staged, ignore_errors=True)
