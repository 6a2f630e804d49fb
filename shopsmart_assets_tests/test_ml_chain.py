"""The ML end of the chain over 10 days: a model is trained, recorded and promoted, and the
blocking check keeps a model below the bar out of service."""

from __future__ import annotations

import json
from datetime import timedelta

import dagster as dg
import joblib
import pytest

from shopsmart_assets.assets.ml import CHAMPION_MODEL_KEY, MEETS_BAR, PURCHASE_MODEL_KEY
from shopsmart_assets.resources import PromotionPolicy
from shopsmart_assets_tests.conftest import START, Platform

pytestmark = [pytest.mark.spark, pytest.mark.e2e]

LAST = START + timedelta(days=9)


@pytest.fixture(scope="module")
def ten_days(module_platform: Platform, spark) -> Platform:
    module_platform.generate(START, days=10, orders_per_day=120)
    module_platform.materialize_days(START, LAST)
    return module_platform


def model_metadata(p: Platform, day) -> dict:
    records = p.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=PURCHASE_MODEL_KEY, asset_partitions=[str(day)]), limit=1
    ).records
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def test_model_is_trained_out_of_time_and_records_its_inputs(ten_days):
    p = ten_days
    meta = model_metadata(p, LAST)
    assert meta["trained"] is True
    assert 0.5 < meta["auc"] <= 1.0
    # trained on the training-set partitions before the last day, evaluated on the last day
    trained_on = meta["trained_on"]
    assert sorted(trained_on) == [str(START + timedelta(days=k)) for k in range(10)]
    assert trained_on[str(START)] == "empty"  # no labels yet in the first week
    assert trained_on[str(LAST)] != "empty"
    record = json.loads((p.path("ml/purchase_model", str(LAST)) / "metrics.json").read_text())
    assert record["metrics"]["auc"] == meta["auc"]
    assert record["trained_on"] == trained_on
    # the first labelled day has no history to train on
    assert model_metadata(p, START + timedelta(days=7))["trained"] is False


def test_champion_serves_the_promoted_model(ten_days):
    p = ten_days
    directory = p.path("ml/champion_model", str(LAST))
    record = json.loads((directory / "champion.json").read_text())
    assert record["model_partition"] is not None
    model = joblib.load(directory / "model.joblib")
    assert hasattr(model, "predict_proba")
    assert p.instance.get_materialized_partitions(CHAMPION_MODEL_KEY) >= {str(LAST)}


def test_blocking_check_keeps_a_weak_model_out(ten_days):
    p = ten_days
    before = (p.path("ml/champion_model", str(LAST)) / "champion.json").read_text()
    result = p.materialize(
        ["ml/purchase_model", "ml/champion_model"],
        str(LAST),
        raise_on_error=False,
        promotion_policy=PromotionPolicy(min_auc=0.999),
    )
    assert not result.success
    [gate] = [e for e in result.get_asset_check_evaluations() if e.check_name == MEETS_BAR]
    assert not gate.passed and "below the minimum" in gate.description
    assert gate.severity == dg.AssetCheckSeverity.ERROR
    champion_steps = [
        e for e in result.all_events if e.step_key == "ml__champion_model" and e.is_step_success
    ]
    assert champion_steps == []
    after = (p.path("ml/champion_model", str(LAST)) / "champion.json").read_text()
    assert after == before
