"""Small real file systems for the lake-storage tests: a tmpfs the test mounts (as root, as the
test machines run), filled to its last byte or remounted read-only. Outside CI a machine that
cannot mount one skips those tests, with the reason; with CI=true it fails them."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from shopsmart_assets_tests.postgres_server import in_ci


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@contextmanager
def small_filesystem(path: Path, size_mib: int) -> Iterator[Path]:
    """A `size_mib` MiB tmpfs mounted at `path` for the block, unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    done = _run("mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0755", "tmpfs", str(path))
    if done.returncode != 0:
        reason = f"no {size_mib} MiB tmpfs at {path}: {(done.stderr or done.stdout).strip()}"
        if in_ci():
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(f"{reason} (mounting needs root; CI=true fails instead)")
    try:
        yield path
    finally:
        remount(path, "rw")
        _run("umount", "--lazy", str(path))


def remount(path: Path, mode: str) -> None:
    """Remount the file system at `path` read-only ("ro") or read-write ("rw")."""
    done = _run("mount", "-o", f"remount,{mode}", str(path))
    assert done.returncode == 0, done.stderr


def fill(directory: Path) -> Path:
    """Fill the file system of `directory` to its last byte with one file; returns it (delete
    it to give the space back)."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as handle:
        for chunk in (2**20, 2**12, 1):
            while True:
                try:
                    handle.write(b"\0" * chunk)
                except OSError as error:
                    assert error.errno == errno.ENOSPC, error
                    break
    assert os.statvfs(directory).f_bavail == 0
    return filler
