"""The suite's shared fixtures: one local Spark session per test run, the run-wide services
and chains shared by the workers, and data directories with their platform. The set-up of the
run itself (environment, JVM options, shared directory) is in run_setup.py, the module order
in ordering.py, the harness in harness.py."""

# isort: skip_file
from __future__ import annotations

# First of all, the test run's environment (run_setup.py), before anything that may use it;
# its hooks make and remove the run's shared directory.
from shopsmart_assets_tests.run_setup import (
    SPARK_CONNECT,
    once_per_test_run,
    pytest_configure,
    pytest_unconfigure,
    spark_classes_ready,
)

from collections.abc import Iterator
from pathlib import Path

import pytest

from shopsmart_assets.resources.spark import spark_config
from shopsmart_assets_tests.harness import Platform, in_memory_instance, platform_at
from shopsmart_assets_tests.postgres_server import postgres_fixture

__all__ = ["pytest_configure", "pytest_unconfigure"]  # hooks, registered from here
pytest_plugins = ["shopsmart_assets_tests.ordering"]


@pytest.fixture(scope="session")
def spark():
    """The one Spark session of the test run; the assets' LazyPySparkResource reuses it."""
    from pyspark.sql import SparkSession

    spark_classes_ready()

    builder = SparkSession.builder
    for key, value in {**spark_config("local[2]"), "spark.app.name": "shopsmart-tests"}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    yield session
    session.stop()


# One PostgreSQL server for the whole test run (scripts/postgres.sh), started on first use.
pg = postgres_fixture(databases=("crm", "orders", "dagster"))


@pytest.fixture(scope="session")
def spark_connect(tmp_path_factory: pytest.TempPathFactory):
    """One Spark Connect server for the whole test run (scripts/spark.sh), however many
    workers: started by the first test that needs it, stopped by the test run's controller at
    the end (`pytest_unconfigure`). The service tests compare it with local mode, and the
    `dagster dev` tests run their Spark steps through it (a step connects instead of starting a
    JVM of its own)."""
    from shopsmart_assets_tests.spark_services import start_spark_connect

    return once_per_test_run(tmp_path_factory, SPARK_CONNECT, start_spark_connect)


@pytest.fixture(scope="session")
def local_chain(tmp_path_factory: pytest.TempPathFactory):
    """The daily chain for two days through the `dagster` command line in local mode, once
    per test run (on any number of workers): the operations tests inspect its runs, the
    service tests and the DuckDB cross-check compare their lakes with it."""
    from shopsmart_assets_tests.spark_services import run_local_chain

    return once_per_test_run(tmp_path_factory, "local-chain", run_local_chain)


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    with in_memory_instance() as instance:
        yield platform_at(tmp_path, instance)


@pytest.fixture(scope="module")
def module_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with in_memory_instance() as instance:
        yield platform_at(tmp_path_factory.mktemp("platform"), instance)
