"""The code location loads cleanly, the way `dagster dev` and CI load it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from shopsmart_assets.definitions import build_definitions
from shopsmart_assets.partitions import build_partitions
from shopsmart_assets_tests.harness import repository_of

ROOT = Path(__file__).resolve().parents[1]


def test_dagster_definitions_validate(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "SHOPSMART_DATA_DIR": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    done = subprocess.run(
        [
            Path(sys.executable).with_name("dagster"),
            "definitions",
            "validate",
            "-w",
            "workspace.yaml",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Validation successful" in done.stdout + done.stderr
    # no warnings of our own making while loading the code location
    assert "shopsmart_assets" not in done.stderr, done.stderr


def test_every_asset_is_partitioned_documented_and_single_run():
    partitions = build_partitions("2026-01-01", "Asia/Kolkata")
    graph = repository_of(build_definitions(partitions)).asset_graph
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {
        "raw/crm_customers",
        "raw/crm_interactions",
        "raw/orders",
        "raw/order_items",
        "lake/purchases",
        "features/customer_features",
        "features/online_store",
        "ml/training_set",
        "ml/purchase_model",
        "ml/champion_model",
        "ml/purchase_scores",
    }
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description and len(node.description) > 40, key
        expected = (
            partitions.hourly if key.path[1] in ("orders", "order_items") else partitions.daily
        )
        assert node.partitions_def == expected, key
        assert node.backfill_policy == dg.BackfillPolicy.single_run(), key


def test_loading_definitions_starts_no_spark_and_opens_no_source():
    code = (
        "import sys; import shopsmart_assets.definitions as d; "
        "d.build_definitions().get_repository_def().load_all_definitions(); "
        "print('pyspark.sql.session' in sys.modules and "
        "__import__('pyspark').sql.SparkSession.getActiveSession() is not None)"
    )
    env = {**os.environ, "SHOPSMART_CRM_URL": "postgresql://nobody@127.0.0.1:1/none"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_settings_are_read_when_the_definitions_are_built_not_at_import(monkeypatch):
    import shopsmart_assets.definitions  # noqa: F401  (already imported: nothing is frozen)

    monkeypatch.setenv("SHOPSMART_TIMEZONE", "Australia/Lord_Howe")
    monkeypatch.setenv("SHOPSMART_START_DATE", "2026-03-01")
    graph = repository_of(build_definitions()).asset_graph
    daily = graph.get(dg.AssetKey(["lake", "purchases"])).partitions_def
    assert (daily.timezone, daily.start.date().isoformat()) == ("Australia/Lord_Howe", "2026-03-01")


@pytest.mark.parametrize(
    ("zone", "until", "last_hour"),
    [
        # 02:00 UTC: the hour 01:00-02:00 has ended, the present one has not
        ("UTC", "2026-11-26T02:00:00+00:00", "2026-11-26-01:00"),
        # Kathmandu (+05:45): 02:00 UTC is 07:45; the last local hour that ended is 06:00-07:00
        ("Asia/Kathmandu", "2026-11-26T02:00:00+00:00", "2026-11-26-06:00"),
        # before the days' own last hour ends, the days' range stands
        ("UTC", "2026-11-25T12:00:00+00:00", "2026-11-25-23:00"),
    ],
)
def test_the_demo_extracts_on_through_the_last_hour_that_ended(monkeypatch, zone, until, last_hour):
    from datetime import date, datetime

    from shopsmart_assets.cli.backfill import chain_ranges

    monkeypatch.setenv("SHOPSMART_TIMEZONE", zone)
    monkeypatch.setenv("SHOPSMART_START_DATE", "2026-11-01")
    hourly, daily = chain_ranges(
        date(2026, 11, 24), date(2026, 11, 25), datetime.fromisoformat(until)
    )
    assert (hourly[1], hourly[2]) == ("2026-11-24-00:00", last_hour)
    assert (daily[1], daily[2]) == ("2026-11-24", "2026-11-25")
    assert chain_ranges(date(2026, 11, 24), date(2026, 11, 25))[0][2] == "2026-11-25-23:00"
