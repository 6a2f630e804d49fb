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
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.sources.partitionOverwriteMode": "static",
}


def spark_config(master: str | None = None, remote: str | None = None) -> dict[str, str]:
    if remote:
        return {"spark.remote": remote, **SQL_CONFIG}
    return {
        "spark.master": master or "local[*]",
        "spark.app.name": "shopsmart",
        "spark.ui.enabled": "false",
        "spark.driver.memory": "2g",
        "spark.ui.showConsoleProgress": "false",
        **SQL_CONFIG,
    }


def spark_resource() -> LazyPySparkResource:
    """The Spark resource as the environment configures it."""
    return LazyPySparkResource(
        spark_config=spark_config(settings.spark_master(), settings.spark_remote())
    )
