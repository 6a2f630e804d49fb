"""Security defaults: secrets only enter through EnvVar (that `make ui` listens on loopback
unless told otherwise is tested on the running UI, in test_ui_process.py)."""

from __future__ import annotations

import dagster as dg

from shopsmart_assets.resources import build_resources


def test_every_secret_is_an_env_var_and_absent_from_the_resource_config(monkeypatch, tmp_path):
    secrets = {
        "SHOPSMART_CRM_URL": "postgresql+psycopg://etl:crm-pw-81@db.internal/crm",
        "SHOPSMART_ORDERS_URL": "postgresql+psycopg://etl:orders-pw-82@db.internal/orders",
        "SHOPSMART_ONLINE_STORE_URL": "postgresql+psycopg://app:store-pw-83@db.internal/store",
        "SHOPSMART_FEAST_REGISTRY": "postgresql+psycopg://app:registry-pw-85@db.internal/feast",
        "SHOPSMART_MLFLOW_TRACKING_URI": "https://ml:mlflow-pw-86@mlflow.internal",
        "SLACK_BOT_TOKEN": "xoxb-security-test-84",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SHOPSMART_DATA_DIR", str(tmp_path))
    resources = build_resources()
    env_vars = [
        value
        for resource in resources.values()
        for value in resource.__dict__.values()
        if isinstance(value, dg.EnvVar)
    ]
    assert sorted(env_vars) == sorted(secrets)  # each secret once, by its variable's name
    shown = repr(resources) + str(
        {key: getattr(resource, "__dict__", {}) for key, resource in resources.items()}
    )
    for value in secrets.values():
        assert value not in shown
