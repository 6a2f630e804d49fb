"""Spark through dagster-pyspark: one lazily created session per process.

`local[*]` by default; SHOPSMART_SPARK_MASTER (spark://…, yarn, k8s://…) or
SHOPSMART_SPARK_REMOTE (Spark Connect, sc://host:15002) move the same code onto a cluster.
"""

from __future__ import annotations

from dagster_pyspark import LazyPySparkResource

from shopsmart_assets import settings

# SQL settings that hold in every mode, Connect included.
SQL_CONFIG = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.sources.partitionOverwriteMode": "static",
    # Adaptive execution may coalesce the partitions of a cached plan too: the purchases'
    # lines are cached for their two writes, and a small range then writes a file per day
    # instead of one per day and shuffle partition (30 days: 30 files, not 240).
    "spark.sql.optimizer.canChangeCachedPlanOutputPartitioning": "true",
}
# Local mode only: the raw zone's hourly partitions (24 a day, 720 for 30 days) are listed by
# the driver, not by a Spark job (which on one machine only adds task overhead). Clusters keep
# Spark's parallel listing for object stores.
LOCAL_CONFIG = {
    "spark.sql.sources.parallelPartitionDiscovery.threshold": "100000",
}


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
    return {
        "spark.master": master or "local[*]",
        "spark.app.name": "shopsmart",
        "spark.ui.enabled": "false",
        "spark.driver.memory": driver_memory,
        "spark.ui.showConsoleProgress": "false",
        **sql,
        **(LOCAL_CONFIG if (master or "local").startswith("local") else {}),
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
