"""Spark through dagster-pyspark: one lazily created session per process.

`local[*]` by default; SHOPSMART_SPARK_MASTER (spark://…, yarn, k8s://…) or
SHOPSMART_SPARK_REMOTE (Spark Connect, sc://host:15002) move the same code onto a cluster.
"""

from __future__ import annotations

from pathlib import Path

from dagster_pyspark import LazyPySparkResource

from shopsmart_assets import settings
from shopsmart_assets.resources.spark_archive import archive_options, driver_archive, maps_here

# SQL settings that hold in every mode, Connect included.
SQL_CONFIG = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.sources.partitionOverwriteMode": "static",
    # Adaptive execution may coalesce the partitions of a cached plan too: the purchases'
    # lines are cached for their two writes, and a small range then writes a file per day
    # instead of one per day and shuffle partition (30 days: 30 files, not 240).
    "spark.sql.optimizer.canChangeCachedPlanOutputPartitioning": "true",
    # The purchases' lines are cached for their two writes and read back once each: encoding
    # them for compression cost more CPU than the memory it saves (docs/performance.md).
    "spark.sql.inMemoryColumnarStorage.compressed": "false",
}
# Local mode only: the raw zone's hourly partitions (24 a day, 720 for 30 days) are listed by
# the driver, not by a Spark job (which on one machine only adds task overhead), and a file on
# a local disk opens at the cost of reading 64 KiB, not 4 MiB: a backfill's small hourly files
# go many to a task instead of a task for every few (30 days at demo scale: 23 tasks a table,
# now 2). Clusters keep Spark's defaults, made for object stores.
LOCAL_CONFIG = {
    "spark.sql.sources.parallelPartitionDiscovery.threshold": "100000",
    "spark.sql.files.openCostInBytes": str(64 * 1024),
}
# A local-mode driver is a JVM that lives for one step, on the machine's every core: the
# throughput collector (no concurrent GC threads competing with the tasks), and the JIT
# compiling what is hot rather than everything that ran a few times (on 2 cores the C2
# compiler's work was most of a cold step's CPU). docs/performance.md has the measurements.
LOCAL_DRIVER_JAVA_OPTIONS = "-XX:+UseParallelGC -XX:CompileThresholdScaling=3"


def local_driver_archive() -> Path:
    """Where the class archive for local-mode drivers (their JVM options) lives."""
    return driver_archive(LOCAL_DRIVER_JAVA_OPTIONS)


def local_driver_java_options() -> str:
    """The local-mode driver's JVM options, mapping the class archive of Spark's classes when
    `shopsmart-spark-archive` has written one and the driver can map it
    (resources/spark_archive.py)."""
    archive = local_driver_archive()
    if not archive.is_file() or not maps_here():
        return LOCAL_DRIVER_JAVA_OPTIONS
    return f"{LOCAL_DRIVER_JAVA_OPTIONS} {archive_options(archive)}"


def sql_config(shuffle_partitions: int = 8) -> dict[str, str]:
    """The SQL settings of every mode, with the shuffle's partitions."""
    return {**SQL_CONFIG, "spark.sql.shuffle.partitions": str(shuffle_partitions)}


def spark_config(
    master: str | None = None,
    remote: str | None = None,
    driver_memory: str = "2g",
    shuffle_partitions: int = 8,
) -> dict[str, str]:
    sql = sql_config(shuffle_partitions)
    if remote:
        return {"spark.remote": remote, **sql}
    local = (master or "local").startswith("local")
    return {
        "spark.master": master or "local[*]",
        "spark.app.name": "shopsmart",
        "spark.ui.enabled": "false",
        "spark.driver.memory": driver_memory,
        "spark.ui.showConsoleProgress": "false",
        **sql,
        **(
            {**LOCAL_CONFIG, "spark.driver.extraJavaOptions": local_driver_java_options()}
            if local
            else {}
        ),
    }


def configured_spark_config() -> dict[str, str]:
    """The Spark settings as the environment configures them (settings.py)."""
    return spark_config(
        settings.spark_master(),
        settings.spark_remote(),
        settings.spark_driver_memory(),
        settings.spark_shuffle_partitions(),
    )


def spark_resource() -> LazyPySparkResource:
    """The Spark resource as the environment configures it."""
    return LazyPySparkResource(spark_config=configured_spark_config())
