"""The order the test modules start in on the workers: the longest first, so that the
workers finish together. Registered as a pytest plugin by conftest.py."""

from __future__ import annotations

import pytest

# `make test` runs the suite on several workers (pytest-xdist, `--dist loadfile`): each test
# module stays on one worker, so that its module fixtures are built once. The modules that
# take longest (wall time, measured) start first, so that the workers finish together: the
# Makefile turns off xdist's own ordering (`--no-loadscope-reorder`; by default it starts the
# modules with the most tests first, which left one worker running the end-to-end test, the
# crash test and the browser test alone for the last 5 minutes).
LONGEST_FIRST = (
    "test_end_to_end",
    "test_ml_chain",
    "test_celery",
    "test_spark_services",
    "test_postgres",
    "test_purchases_transform",
    "test_reliability",
    "test_crash",
    "test_duckdb_crosscheck",
    "test_ui_browser",
    "test_ui_process",
    "test_pipeline",
    "test_operations",
    "test_correctness",
    "test_retries",
    "test_lake_storage",
    "test_lake_layout",
    "test_automation",
    "test_demo_generator",
    "test_properties",
    "test_lake",
    "test_features_transform",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        module = item.nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")
        return LONGEST_FIRST.index(module) if module in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a module is kept
