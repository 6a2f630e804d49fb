"""A class data sharing archive of Spark's classes for local-mode drivers.

A local-mode Spark step starts a JVM of its own, which spends seconds loading and linking the
classes of Spark's jars before the first query runs. HotSpot can map them instead from an
archive that a JVM which loaded them wrote once (dynamic class data sharing:
`-XX:ArchiveClassesAtExit`, then `-XX:SharedArchiveFile`). `shopsmart-spark-archive` (run by
`make install`) writes one into the virtual environment for the installed pyspark and the
drivers' JVM options; a driver maps it when it is there and starts as before when it is not.
A Java runtime that no longer matches prints one warning and runs without it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shopsmart_assets import settings

# What a Spark step loads: a session, the SQL functions the transforms use, a broadcast join, a
# window, a sort-merge join, dates and decimals, a cached frame, a partitioned Parquet write and
# its read.
WORKLOAD = """
from pyspark.sql import SparkSession, Window, functions as F
spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false") \\
    .config("spark.sql.shuffle.partitions", "4").getOrCreate()
rows = spark.range(4000).select(
    (F.col("id") % 50).alias("customer_id"),
    F.date_add(F.lit("2026-01-01").cast("date"), (F.col("id") % 3).cast("int")).alias("date"),
    (F.col("id") * 1.25).try_cast("decimal(14,2)").alias("amount"),
    (F.col("id") % 700).alias("order_id"),
    F.when(F.col("id") % 7 == 0, F.lit('{{"x": "1"}}')).alias("unparsed"),
)
customers = spark.range(50).select(F.col("id").alias("customer_id"), F.lit("US").alias("country"))
joined = rows.join(F.broadcast(customers), "customer_id", "left")
orders = rows.groupBy("date", "order_id").agg(F.max("amount").alias("top"))
ranked = joined.repartition("date", "order_id").withColumn(
    "n", F.row_number().over(Window.partitionBy("date", "order_id").orderBy(F.desc("amount")))
).join(orders, ["date", "order_id"], "left").withColumn(
    "bad", F.from_json("unparsed", "map<string,string>")
).cache()
path = {path!r}
ranked.drop("bad").write.mode("overwrite").partitionBy("date").parquet(path)
ranked.groupBy("date", "country").agg(F.sum("amount"), F.countDistinct("order_id")).collect()
spark.read.parquet(path).where(F.col("date") > "2026-01-01").collect()
spark.stop()
"""


def archive_options(archive: Path) -> str:
    """The JVM options that map `archive`."""
    return f"-XX:SharedArchiveFile={archive} -Xshare:auto"


def maps_here() -> bool:
    """Whether a driver started from this environment can map the archive: spark-submit puts
    SPARK_CONF_DIR on its class path, and HotSpot maps no archive with a non-empty directory
    on the class path (it warns and starts without it), so none is offered then."""
    conf = settings.spark_conf_dir()
    return conf is None or not conf.is_dir() or not any(conf.iterdir())


def driver_archive(jvm_options: str) -> Path:
    """Where the archive for drivers started with `jvm_options` lives: in the environment the
    platform is installed in, named after the pyspark version and the options (the JVM maps no
    archive written under other options)."""
    import pyspark

    key = hashlib.sha256(f"{pyspark.__version__}\n{jvm_options}".encode()).hexdigest()[:12]
    return Path(sys.prefix) / "share" / "shopsmart" / f"spark-driver-{key}.jsa"


def write_archive(archive: Path, jvm_options: str, timeout: float = 600) -> bool:
    """Write `archive` from a small local Spark session run with `jvm_options` (the drivers'
    own). It appears whole (written beside it, then renamed) or not at all; True if it did."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(f"{archive.name}.{os.getpid()}.partial")
    with tempfile.TemporaryDirectory(prefix="shopsmart-archive-") as scratch:
        dump = f"{jvm_options} -XX:ArchiveClassesAtExit={partial}"
        env = settings.child_environment(PYSPARK_SUBMIT_ARGS=submit_args(dump))
        env.pop("SPARK_CONF_DIR", None)  # see maps_here
        done = subprocess.run(
            [sys.executable, "-c", WORKLOAD.format(path=str(Path(scratch) / "out"))],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    # The JVM writes the archive as it exits, after the Python that started it.
    deadline = time.monotonic() + 120
    while _jvm_writing(partial) and time.monotonic() < deadline:
        time.sleep(0.2)
    if done.returncode != 0 or not partial.exists() or _jvm_writing(partial):
        partial.unlink(missing_ok=True)
        return False
    partial.rename(archive)
    return True


def submit_args(driver_options: str, executor_options: str | None = None) -> str:
    """PYSPARK_SUBMIT_ARGS for the drivers pyspark launches (and the executors they start)."""
    import shlex

    confs = [f"spark.driver.extraJavaOptions={driver_options}"]
    if executor_options is not None:
        confs.append(f"spark.executor.extraJavaOptions={executor_options}")
    return " ".join([*(f"--conf {shlex.quote(c)}" for c in confs), "pyspark-shell"])


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


def _jvm_writing(archive: Path) -> bool:
    return bool(processes_naming(f"-XX:ArchiveClassesAtExit={archive}"))
