"""A class data sharing archive of Spark's classes for the test run's Spark drivers.

A Spark driver JVM spends most of its start loading and linking the classes of Spark's jars.
The JVM can instead map them from an archive written once by a JVM that loaded them (HotSpot's
dynamic class data sharing, `-XX:ArchiveClassesAtExit` / `-XX:SharedArchiveFile`). The test run
writes one at its start, in the background, and every local-mode driver started after it is
in place maps it. A JVM that finds none runs without it (`-Xshare:auto`).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

# Loads what the tests' drivers load: a session, SQL functions, a join, a window, dates and
# decimals, a partitioned Parquet write and its read.
WORKLOAD = """
from pyspark.sql import SparkSession, Window, functions as F
spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false") \\
    .config("spark.sql.shuffle.partitions", "4").getOrCreate()
rows = spark.range(2000).select(
    (F.col("id") % 50).alias("customer_id"),
    F.date_add(F.lit("2026-01-01").cast("date"), (F.col("id") % 3).cast("int")).alias("date"),
    (F.col("id") * 1.25).cast("decimal(12,2)").alias("amount"),
    F.concat(F.lit("o-"), F.col("id").cast("string")).alias("order_id"),
)
customers = spark.range(50).select(F.col("id").alias("customer_id"), F.lit("US").alias("country"))
joined = rows.join(F.broadcast(customers), "customer_id", "left")
ranked = joined.withColumn(
    "n", F.row_number().over(Window.partitionBy("customer_id").orderBy(F.desc("amount")))
)
daily = ranked.groupBy("date", "country").agg(F.sum("amount"), F.countDistinct("order_id"))
path = {path!r}
daily.write.mode("overwrite").partitionBy("date").parquet(path)
spark.read.parquet(path).where(F.col("date") > "2026-01-01").collect()
spark.stop()
"""


def class_archive_options(archive: Path) -> str:
    """The JVM options that map `archive` once it exists (a JVM run before runs without)."""
    return f"-XX:SharedArchiveFile={archive} -Xshare:auto"


class ClassArchiveBuild:
    """Writes `archive` in the background from a local Spark session run with `jvm_options`
    (the drivers' own, so that the archive is valid for them). It appears at once, complete
    (written beside it, then renamed), or not at all."""

    def __init__(self, archive: Path, jvm_options: str, timeout: float = 600) -> None:
        self.archive = archive
        self._partial = archive.with_name(f"{archive.name}.partial")
        self._building = building_marker(archive)
        self._building.touch()
        scratch = archive.with_name(f"{archive.name}.parquet")
        dump = f"{jvm_options} -XX:ArchiveClassesAtExit={self._partial}"
        self._process = subprocess.Popen(
            [sys.executable, "-c", WORKLOAD.format(path=str(scratch))],
            env={**os.environ, "PYSPARK_SUBMIT_ARGS": pyspark_submit_args(dump, jvm_options)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._timeout = timeout
        self._thread = threading.Thread(target=self._finish, daemon=True)
        self._thread.start()

    def _finish(self) -> None:
        try:
            code = self._process.wait(timeout=self._timeout)
            # The JVM writes the archive as it exits, after the Python that started it has.
            deadline = time.monotonic() + 120
            while _jvms_writing(self._partial) and time.monotonic() < deadline:
                time.sleep(0.2)
            if code == 0 and self._partial.exists() and not _jvms_writing(self._partial):
                self._partial.rename(self.archive)
        except subprocess.TimeoutExpired:
            pass
        finally:
            self._building.unlink(missing_ok=True)

    def stop(self) -> None:
        """Stop the build where it is (a test run shorter than the build)."""
        if self._thread.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
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


def pyspark_submit_args(driver_options: str, executor_options: str) -> str:
    """PYSPARK_SUBMIT_ARGS for the drivers pyspark launches and the executors they start."""
    return " ".join(
        [
            "--conf",
            shlex.quote(f"spark.driver.extraJavaOptions={driver_options}"),
            "--conf",
            shlex.quote(f"spark.executor.extraJavaOptions={executor_options}"),
            "pyspark-shell",
        ]
    )


def processes_naming(text: str) -> list[tuple[int, str]]:
    """(pid, command line) of every process whose command line contains `text`, from /proc."""
    found = []
    needle = text.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in command:
            found.append((int(entry.name), command.replace(b"\0", b" ").decode()[:200]))
    return found


def _jvms_writing(archive: Path) -> bool:
    return bool(processes_naming(f"-XX:ArchiveClassesAtExit={archive}"))
