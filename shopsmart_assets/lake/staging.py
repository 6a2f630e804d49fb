"""Staging: where a step writes a partition's files before the lake commits them.

A step writes into a fresh directory under `<lake>/_staging/`, on the lake's file system; the
commit (delta.py) moves the files into the table and records them in one Delta commit, so a
reader sees a partition before or after, never half written. A staging directory is removed
when its step is done with it, whatever happened; one that a killed writer left behind is
swept by a later write once abandoned.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

STAGING = "_staging"


@dataclass(frozen=True)
class Staging:
    """Staging directories under a lake root."""

    root: Path
    # A staging directory untouched this long belongs to a writer that died (kill -9, lost
    # node): the next write removes it. No partition write takes anywhere near that long.
    abandoned_seconds: int = 86_400

    @contextmanager
    def directory(self) -> Iterator[Path]:
        """A fresh directory beside the lake's zones, removed afterwards whatever happens
        (and, should the process die first, by a later write once it is abandoned)."""
        self._sweep_abandoned()
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

    def _sweep_abandoned(self) -> None:
        cutoff = time.time() - self.abandoned_seconds
        with suppress(FileNotFoundError):
            for staged in (self.root / STAGING).iterdir():
                with suppress(FileNotFoundError):
                    if staged.stat().st_mtime < cutoff:
                        shutil.rmtree(staged, ignore_errors=True)
