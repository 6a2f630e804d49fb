"""Feast's online store through the platform's resource, on SQLite and on a real Redis:
newest values win, backfills never overwrite fresher ones, writes go in bounded batches, one
lookup gives features and score, a locked or unreachable store is named; URLs map to Feast's
config."""

from __future__ import annotations

import importlib
import itertools
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from shopsmart_assets.feature_repo import CUSTOMER_FEATURES_VIEW, SCORES_VIEW, VIEW_COLUMNS
from shopsmart_assets.resources import FeatureStoreResource
from shopsmart_assets.resources.feature_store import (
    OnlineStoreUnavailable,
    online_store_config,
    registry_config,
)

_partitions = itertools.count()


def partition(frame: pd.DataFrame, root: Path) -> Path:
    """A frame as a lake partition: a directory with its Parquet file."""
    directory = root / f"partition-{next(_partitions)}"
    directory.mkdir(parents=True)
    frame.to_parquet(directory / "part-0.parquet", index=False)
    return directory


def write_newest(store: FeatureStoreResource, view: str, frame: pd.DataFrame) -> int:
    """One day's rows written as the assets write a range of days (the rows written)."""
    return store.write_newest_of_days(view, {"day": partition(frame, Path(store.repo_dir))})["day"]


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


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory) -> str:
    """A real Redis server (Debian's redis-server, scripts/redis.sh) for the module."""
    from shopsmart_cluster import redis_server

    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


_redis_dbs = itertools.count(1)


def store_at(directory: Path, kind: str, request: pytest.FixtureRequest) -> FeatureStoreResource:
    """A feature store on a fresh online store of `kind` (SQLite file, or a Redis database of
    its own) with its registry in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    if kind == "sqlite":
        online = f"sqlite:///{directory / 'online.db'}"
    else:
        online = f"{request.getfixturevalue('redis_url')}/{next(_redis_dbs)}"
    return FeatureStoreResource(
        online_store=online,
        registry=str(directory / "registry.db"),
        repo_dir=str(directory),
        view_tables={name: str(directory / name) for name in VIEW_COLUMNS},
    )


@pytest.fixture(params=["sqlite", "redis"])
def store(tmp_path, request) -> FeatureStoreResource:
    return store_at(tmp_path, request.param, request)


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


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_range_of_days_in_one_write_leaves_what_day_by_day_writes_leave(
    tmp_path, kind, request, monkeypatch
):
    def fresh(name: str) -> FeatureStoreResource:
        return store_at(tmp_path / name, kind, request)

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
    # written in batches of at most two rows: Feast's memory follows the rows of a call
    calls = record_online_writes(at_once, monkeypatch, batch=2)
    paths = {day: partition(frame, tmp_path) for day, frame in days.items()}
    written = at_once.write_newest_of_days(CUSTOMER_FEATURES_VIEW, paths)
    assert calls and max(calls) <= 2
    # each customer's newest row is written once, by the day it comes from
    assert written == {"2026-03-06": 1, "2026-03-07": 0, "2026-03-08": 1}
    ids = [1, 2, 3, 4]
    expected, actual = one_by_one.online(ids), at_once.online(ids)
    pd.testing.assert_frame_equal(actual, expected)
    served = actual.set_index("customer_id")["monetary_90d"]
    assert list(served.loc[[1, 2, 3]]) == [30.0, 99.0, 10.0]


def record_online_writes(
    store: FeatureStoreResource, monkeypatch: pytest.MonkeyPatch, batch: int
) -> list[int]:
    """The rows of each `write_to_online_store` call the store makes, with `batch` rows a
    call at most."""
    module = importlib.import_module("shopsmart_assets.resources.feature_store")
    monkeypatch.setattr(module, "ONLINE_WRITE_BATCH", batch)
    calls: list[int] = []
    feast_store = store.get_store()
    original = feast_store.write_to_online_store

    def counted(view, frame, *args, **kwargs):
        calls.append(len(frame))
        return original(view, frame, *args, **kwargs)

    monkeypatch.setattr(feast_store, "write_to_online_store", counted)
    return calls


def test_a_nightly_write_reads_nothing_back_and_a_backfill_reads_only_older_rows(
    tmp_path, request, monkeypatch
):
    """Reading what the store holds costs as much as writing: only rows older than the
    view's watermark (the newest event time written) are read back."""
    from shopsmart_assets.resources.feature_store import WATERMARK_ID

    store = store_at(tmp_path, "sqlite", request)
    read: list[int] = []
    original = FeatureStoreResource.event_times

    def counted(self, view, customer_ids):
        ids = [int(c) for c in customer_ids]
        read.extend(c for c in ids if c != WATERMARK_ID)
        return original(self, view, ids)

    monkeypatch.setattr(FeatureStoreResource, "event_times", counted)
    feature_store = importlib.import_module(FeatureStoreResource.__module__)
    monkeypatch.setattr(feature_store, "ONLINE_WRITE_BATCH", 2)
    write_newest(store, CUSTOMER_FEATURES_VIEW, day_features("2026-03-07", 20.0, (1, 2, 5, 6)))
    # no watermark yet: a batch's worth is read back, found nowhere online (a new store)
    assert 2 <= len(read) < 4  # a batch's worth (DuckDB may hand over a smaller one first)
    read.clear()
    write_newest(store, CUSTOMER_FEATURES_VIEW, day_features("2026-03-08", 30.0, (1, 2, 3)))
    write_newest(store, CUSTOMER_FEATURES_VIEW, day_features("2026-03-08", 31.0, (1,)))
    assert read == []  # the nightly day and its re-run are newer than anything online
    assert write_newest(store, CUSTOMER_FEATURES_VIEW, day_features("2026-03-06", 9.0, (2, 4))) == 1
    assert sorted(read) == [2, 4]  # a backfill of an older day checks its rows
    served = store.online([1, 2, 3, 4]).set_index("customer_id")["monetary_90d"]
    assert list(served) == [31.0, 30.0, 30.0, 9.0]
    assert list(store.online([5, 6])["monetary_90d"]) == [20.0, 20.0]
    end = pd.Timestamp("2026-03-09", tz="America/New_York").tz_convert("UTC")
    assert store.watermark(CUSTOMER_FEATURES_VIEW) == end


def test_a_store_written_before_watermarks_is_still_never_overwritten_by_older_rows(
    tmp_path, request, monkeypatch
):
    store = store_at(tmp_path, "sqlite", request)
    fresher = day_features("2026-03-10", 99.0, customers=(1, 2, 3, 4))
    store.get_store().write_to_online_store(CUSTOMER_FEATURES_VIEW, fresher)  # no watermark
    feature_store = importlib.import_module(FeatureStoreResource.__module__)
    monkeypatch.setattr(feature_store, "ONLINE_WRITE_BATCH", 2)
    older = day_features("2026-03-06", 10.0, customers=(1, 2, 3, 4, 5))
    assert write_newest(store, CUSTOMER_FEATURES_VIEW, older) == 1  # customer 5 alone
    served = store.online([1, 2, 3, 4, 5]).set_index("customer_id")["monetary_90d"]
    assert list(served) == [99.0, 99.0, 99.0, 99.0, 10.0]


def test_a_reader_of_the_sqlite_store_never_blocks_its_writer(tmp_path, request):
    """The store is in write-ahead-log mode: a reader in the middle of a read (the feature
    server) does not hold a write up, and sees the values of before until it reads again."""
    store = store_at(tmp_path, "sqlite", request)
    write_newest(store, CUSTOMER_FEATURES_VIEW, day_features("2026-03-07", 20.0))
    reader = sqlite3.connect(tmp_path / "online.db")
    assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    reader.execute("BEGIN")
    [(rows,)] = reader.execute("SELECT count(*) FROM shopsmart_customer_features").fetchall()
    try:
        assert write_newest(store, CUSTOMER_FEATURES_VIEW, day_features("2026-03-08", 30.0)) == 2
        assert list(store.online([1, 2])["monetary_90d"]) == [30.0, 30.0]
    finally:
        reader.rollback()
        reader.close()
    assert rows > 0


def test_a_locked_sqlite_store_is_named_in_one_error(tmp_path, request):
    store = store_at(tmp_path, "sqlite", request)
    write_newest(store, CUSTOMER_FEATURES_VIEW, day_features("2026-03-07", 20.0))
    other = sqlite3.connect(tmp_path / "online.db")
    other.execute("BEGIN EXCLUSIVE")  # another writer holds the database
    try:
        with pytest.raises(OnlineStoreUnavailable) as raised:
            write_newest(store, CUSTOMER_FEATURES_VIEW, day_features("2026-03-08", 30.0))
    finally:
        other.rollback()
        other.close()
    message = str(raised.value)
    assert f"sqlite:///{tmp_path / 'online.db'}" in message and "locked" in message
    # once the other writer is gone, the same write goes through and serves its values
    assert write_newest(store, CUSTOMER_FEATURES_VIEW, day_features("2026-03-08", 30.0)) == 2
    assert list(store.online([1, 2])["monetary_90d"]) == [30.0, 30.0]


def test_an_unreachable_redis_store_is_named_without_its_password(tmp_path):
    from shopsmart_assets.cli.devserver import free_port

    store = FeatureStoreResource(
        online_store=f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0",
        registry=str(tmp_path / "registry.db"),
        repo_dir=str(tmp_path),
        view_tables={name: str(tmp_path / name) for name in VIEW_COLUMNS},
    )
    with pytest.raises(OnlineStoreUnavailable) as raised:
        write_newest(store, CUSTOMER_FEATURES_VIEW, day_features("2026-03-07", 20.0))
    message = str(raised.value)
    assert "redis://:***@127.0.0.1:" in message and "s3cret-pw" not in message


@pytest.mark.parametrize(("url", "pooled"), [(None, True), ("redis://127.0.0.1:6379/0", False)])
def test_the_steps_writing_feast_take_turns_on_sqlite_and_retry(url, pooled, monkeypatch):
    """SQLite takes one writer: both steps that write it are in pool `feast_online`, whose
    limit (dagster.yaml) is 1; Redis takes several (no pool). Both retry with backoff."""
    from shopsmart_assets import settings
    from shopsmart_assets.definitions import build_assets
    from shopsmart_assets.defs.features.assets import ONLINE_STORE_KEY
    from shopsmart_assets.defs.ml.purchase_scores import PURCHASE_SCORES_KEY
    from shopsmart_assets.defs.worker_pools import FEAST_POOL
    from shopsmart_assets.partitions import build_partitions

    if url:
        monkeypatch.setenv(settings.ONLINE_STORE_URL_VAR, url)
    else:
        monkeypatch.delenv(settings.ONLINE_STORE_URL_VAR, raising=False)
    assets = build_assets(build_partitions("2026-01-01", "UTC"))
    writers = [a for a in assets if {ONLINE_STORE_KEY, PURCHASE_SCORES_KEY} & set(a.keys)]
    assert len(writers) == 2
    for asset in writers:
        node = asset.node_def
        assert node.pool == (FEAST_POOL if pooled else None)
        assert node.retry_policy is not None and node.retry_policy.max_retries == 3
    limit = Path(__file__).parents[1] / "shopsmart_assets" / "instance" / "dagster.yaml"
    assert "default_limit: 1" in limit.read_text()


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
    assert online_store_config("redis://:p%40ss@cache.internal:6380/2") == {
        "type": "redis",
        "connection_string": "cache.internal:6380,db=2,password=p@ss",
        "skip_dedup": True,
    }
    assert online_store_config("rediss://10.0.0.5") == {
        "type": "redis",
        "connection_string": "10.0.0.5:6379,db=0,ssl=true",
        "skip_dedup": True,
    }
    with pytest.raises(ValueError, match="sqlite:///…, redis://… or postgresql://…"):
        online_store_config("mysql://x@y/z")
    assert registry_config("/data/feast/registry.db")["registry_type"] == "file"
    assert registry_config("postgresql+psycopg://u:p@h/r")["registry_type"] == "sql"
