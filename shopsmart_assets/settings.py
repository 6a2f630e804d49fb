"""Every environment variable the platform reads, with its default.

Values are read when called, not at import, so tests and tools can point the platform at other
places by setting the environment. Secrets (source URLs with passwords, the Slack token) are not
read here: resources receive them through `dagster.EnvVar` so they never reach the UI.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_START_DATE = "2026-01-01"
DEFAULT_TIMEZONE = "UTC"

CRM_URL_VAR = "SHOPSMART_CRM_URL"
ORDERS_URL_VAR = "SHOPSMART_ORDERS_URL"
ONLINE_STORE_URL_VAR = "SHOPSMART_ONLINE_STORE_URL"


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def data_dir() -> Path:
    """SHOPSMART_DATA_DIR: the demo sources, the lake and the online store live here."""
    return Path(_env("SHOPSMART_DATA_DIR") or "./data").expanduser().resolve()


def lake_dir() -> Path:
    return data_dir() / "lake"


def default_crm_url() -> str:
    return f"sqlite:///{data_dir() / 'sources' / 'crm.db'}"


def default_orders_url() -> str:
    return f"sqlite:///{data_dir() / 'sources' / 'orders.db'}"


def default_online_store_url() -> str:
    return f"sqlite:///{data_dir() / 'online_store.db'}"


def url_is_set(var: str) -> bool:
    return _env(var) is not None


def timezone() -> str:
    """SHOPSMART_TIMEZONE: the company time zone that partition boundaries follow."""
    return _env("SHOPSMART_TIMEZONE") or DEFAULT_TIMEZONE


def start_date() -> str:
    """SHOPSMART_START_DATE: the first daily partition (YYYY-MM-DD)."""
    return _env("SHOPSMART_START_DATE") or DEFAULT_START_DATE


def spark_master() -> str | None:
    """SHOPSMART_SPARK_MASTER: e.g. spark://host:7077, yarn, k8s://…; default local[*]."""
    return _env("SHOPSMART_SPARK_MASTER")


def spark_remote() -> str | None:
    """SHOPSMART_SPARK_REMOTE: a Spark Connect URL, e.g. sc://127.0.0.1:15002."""
    return _env("SHOPSMART_SPARK_REMOTE")
