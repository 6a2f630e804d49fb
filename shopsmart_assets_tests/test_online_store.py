"""The online store serves the latest features by key; backfills never overwrite newer."""

from __future__ import annotations

from datetime import date

import pandas as pd

from shopsmart_assets.resources import OnlineStoreResource
from shopsmart_assets.resources.online_store import main as features_cli
from shopsmart_assets.transforms.features import FEATURE_COLUMNS


def day_features(as_of: date, spend: float, customers=(1, 2)) -> pd.DataFrame:
    row = {c: 0 for c in FEATURE_COLUMNS} | {
        "segment": "consumer",
        "country": "US",
        "has_valid_email": True,
        "recency_days": None,
    }
    return pd.DataFrame(
        [{**row, "as_of_date": as_of, "customer_id": c, "monetary_90d": spend} for c in customers]
    )


def test_newer_wins_and_backfill_does_not_regress(tmp_path, capsys):
    store = OnlineStoreResource(url=f"sqlite:///{tmp_path / 'online.db'}")
    store.upsert(day_features(date(2026, 1, 2), 20.0))
    store.upsert(day_features(date(2026, 1, 3), 30.0, customers=(1,)))
    store.upsert(day_features(date(2026, 1, 1), 10.0, customers=(1, 2, 3)))  # a backfill
    assert store.get(1)["monetary_90d"] == 30.0
    assert store.get(1)["as_of_date"] == date(2026, 1, 3)
    assert store.get(2)["monetary_90d"] == 20.0
    assert store.get(3)["monetary_90d"] == 10.0  # new customer from the backfill
    assert store.get(4) is None
    assert store.count() == 3

    assert features_cli(["1", "--url", store.url]) == 0
    assert '"monetary_90d": 30.0' in capsys.readouterr().out
    assert features_cli(["4", "--url", store.url]) == 1
