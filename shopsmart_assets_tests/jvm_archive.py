"""The test run's class data sharing archive of Spark's classes, for its Spark drivers.

Production's local-mode drivers map an archive `shopsmart-spark-archive` writes at install
(shopsmart_assets/resources/spark_archive.py). The test run's drivers start with other JVM
options (run_setup.py), for which that archive is not valid, so the run writes its own with
the same function, in the background at its start; every local-mode driver started once it
is in place maps it, and a driver started before runs without (`-Xshare:auto`).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import suppress
from pathlib import Path

from shopsmart_assets.resources.spark_archive import processes_naming, write_archive


class ClassArchiveBuild:
    """Writes `archive` in the background from a local Spark session run with `jvm_options`
    (the drivers' own, so that the archive is valid for them). It appears at once, complete,
    or not at all."""

    def __init__(self, archive: Path, jvm_options: str, timeout: float = 600) -> None:
        self.archive = archive
        self._building = building_marker(archive)
        self._building.touch()
        self._thread = threading.Thread(
            target=self._write, args=(jvm_options, timeout), daemon=True
        )
        self._thread.start()

    def _write(self, jvm_options: str, timeout: float) -> None:
        try:
            write_archive(self.archive, jvm_options, timeout)
        except Exception:  # a run without the archive is slower, not wrong
            pass
        finally:
            self._building.unlink(missing_ok=True)

    def stop(self) -> None:
        """Stop the build where it is (a test run shorter than the build)."""
        if self._thread.is_alive():
            for pid, _ in processes_naming(f"-XX:ArchiveClassesAtExit={self.archive}."):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._thread.join(timeout=30)


def building_marker(archive: Path) -> Path:
    """Present while the archive is being written."""
    return archive.with_name(f"{archive.name}.building")


def wait_for_class_archive(archive: Path, timeout: float = 180) -> None:
    """Wait while the archive is being written (a driver started now would run without it).
    Where a JVM would start anyway, waiting costs no CPU: on 2 cores the other workers and the
    build itself use it."""
    deadline = time.monotonic() + timeout
    while building_marker(archive).exists() and time.monotonic() < deadline:
        time.sleep(0.5)
