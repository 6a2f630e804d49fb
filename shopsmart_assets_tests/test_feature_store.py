"""Feast's online store through the platform's resource: newest values win, backfills never
overwrite fresher ones, and one lookup gives features and score; URLs map to Feast's config."""

from __future__ import annotations

import pandas as pd
import pytest

from shopsmart_assets.feature_repo import CUSTOMER_FEATURES_VIEW, SCORES_VIEW, VIEW_COLUMNS
from shopsmart_assets.resources import FeatureStoreResource
from shopsmart_assets.resources.feature_store import online_store_config, registry_config


def write_newest(store: FeatureStoreResource, view: str, frame: pd.DataFrame) -> int:
    """One day's rows written as the assets write a range of days (the rows written)."""
    return store.write_newest_of_days(view, {"day": frame})["day"]


def day_features(day: str, spend: float, customers=(1, 2)) -> pd.DataFrame:
    row = {c: 1 for c in VIEW_COLUMNS[CUSTOMER_FEATURES_VIEW]} | {
        "segment": "consumer",
        "country": "US",
        "has_valid_email": True,
        "recency_days": None,
    }
    end = (pd.Timestamp(day) + pd.Timedelta(days=1)).tz_localize("America/New_York")
    return pd.DataFrame(
        [
            {**row, "customer_id": c, "monetary_90d": spend, "event_timestamp": end}
            for c in customers
        ]
    )


@pytest.fixture
def store(tmp_path) -> FeatureStoreResource:
    return FeatureStoreResource(
        online_store=f"sqlite:///{tmp_path / 'online.db'}",
        registry=str(tmp_path / "registry.db"),
        repo_dir=str(tmp_path),
        view_tables={name: str(tmp_path / name) for name in VIEW_COLUMNS},
    )


def test_feast_runs_without_typeguard_instrumentation(store):
    """Every Feast module the store loads is left as written (typeguard's `@typechecked` a
    no-op, as under `python -O`): instrumented methods call typeguard's checkers."""
    store.get_store()  # the process's first use of Feast, as in a step
    import feast.feature_view
    import feast.infra.online_stores.sqlite

    methods = [
        feast.feature_view.FeatureView.__init__,
        feast.infra.online_stores.sqlite.SqliteOnlineStore.online_read,
    ]
    for method in methods:
        assert "check_argument_types_internal" not in method.__code__.co_names, method


def test_newest_wins_and_a_backfill_does_not_regress(store):
    assert write_newest(store, CUSTOMER_FEATURES_VIEW, day_features("2026-03-07", 20.0)) == 2
    assert write_newest(store, CUSTOMER_FEATURES_VIEW, day_features("2026-03-08", 30.0, (1,))) == 1
    # a backfill of an older day only adds the customer nobody had served yet
    backfill = day_features("2026-03-06", 10.0, customers=(1, 2, 3))
    assert write_newest(store, CUSTOMER_FEATURES_VIEW, backfill) == 1
    # re-running the newest day replaces its own values (a late correction)
    assert write_newest(store, CUSTOMER_FEATURES_VIEW, day_features("2026-03-08", 31.0, (1,))) == 1
    scores = pd.DataFrame(
        {
            "customer_id": [1, 3],
            "score": [0.75, 0.125],
            "model_version": [4, 4],
            "event_timestamp": pd.Timestamp("2026-03-09", tz="UTC"),
        }
    )
    assert write_newest(store, SCORES_VIEW, scores) == 2
    served = store.online([1, 2, 3, 4]).set_index("customer_id")
    assert served.loc[1, "monetary_90d"] == 31.0 and served.loc[1, "score"] == 0.75
    assert served.loc[2, "monetary_90d"] == 20.0 and pd.isna(served.loc[2, "score"])
    assert served.loc[3, "monetary_90d"] == 10.0 and served.loc[3, "model_version"] == 4
    assert pd.isna(served.loc[4, "monetary_90d"]) and pd.isna(served.loc[1, "recency_days"])
    times = store.event_times(CUSTOMER_FEATURES_VIEW, [1, 2, 4])
    assert times.iloc[0] == pd.Timestamp("2026-03-09 04:00", tz="UTC")  # 23-hour day's end
    assert times.iloc[1] == pd.Timestamp("2026-03-08 05:00", tz="UTC")
    assert pd.isna(times.iloc[2])


def test_a_range_of_days_in_one_write_leaves_what_day_by_day_writes_leave(tmp_path):
    def fresh(name: str) -> FeatureStoreResource:
        return FeatureStoreResource(
            online_store=f"sqlite:///{tmp_path / name / 'online.db'}",
            registry=str(tmp_path / name / "registry.db"),
            repo_dir=str(tmp_path / name),
            view_tables={view: str(tmp_path / name / view) for view in VIEW_COLUMNS},
        )

    days = {
        "2026-03-06": day_features("2026-03-06", 10.0, customers=(1, 2, 3)),
        "2026-03-07": day_features("2026-03-07", 20.0, customers=(1, 2)),
        "2026-03-08": day_features("2026-03-08", 30.0, customers=(1,)),
    }
    # customer 2 already has a fresher value online than any day of the range
    already = day_features("2026-03-10", 99.0, customers=(2,))
    one_by_one, at_once = fresh("one-by-one"), fresh("at-once")
    for store in (one_by_one, at_once):
        write_newest(store, CUSTOMER_FEATURES_VIEW, already)
    for frame in days.values():
        write_newest(one_by_one, CUSTOMER_FEATURES_VIEW, frame)
    written = at_once.write_newest_of_days(CUSTOMER_FEATURES_VIEW, days)
    # each customer's newest row is written once, by the day it comes from
    assert written == {"2026-03-06": 1, "2026-03-07": 0, "2026-03-08": 1}
    ids = [1, 2, 3, 4]
    expected, actual = one_by_one.online(ids), at_once.online(ids)
    pd.testing.assert_frame_equal(actual, expected)
    served = actual.set_index("customer_id")["monetary_90d"]
    assert list(served.loc[[1, 2, 3]]) == [30.0, 99.0, 10.0]


def test_store_urls_become_feast_config():
    assert online_store_config("sqlite:////data/feast/online.db") == {
        "type": "sqlite",
        "path": "/data/feast/online.db",
    }
    postgres = online_store_config(
        "postgresql+psycopg://feast:s3cret@db.internal:6543/online?sslmode=require&schema=fs"
    )
    assert postgres == {
        "type": "postgres",
        "host": "db.internal",
        "port": 6543,
        "database": "online",
        "user": "feast",
        "password": "s3cret",
        "db_schema": "fs",
        "sslmode": "require",
    }
    with pytest.raises(ValueError, match="sqlite:///… or postgresql://…"):
        online_store_config("mysql://x@y/z")
    assert registry_config("/data/feast/registry.db")["registry_type"] == "file"
    assert registry_config("postgresql+psycopg://u:p@h/r")["registry_type"] == "sql"
