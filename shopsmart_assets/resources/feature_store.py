"""Feast as a Dagster resource: the feature store the online features and scores are served
from.

The online store is SQLite under the data dir by default; Redis (`redis://…`, Feast's fastest
writer, several writers at once) or PostgreSQL in production (`SHOPSMART_ONLINE_STORE_URL`);
the registry is a file by default or a SQL registry (`SHOPSMART_FEAST_REGISTRY=postgresql+psycopg://…`).
The repository's objects (`shopsmart_assets.feature_repo`) are applied on first use in a
process, so a new data dir or database needs no separate `feast apply`.

Writes are bounded in memory whatever the days and customers: each customer's newest row of
the days written is found by DuckDB within its memory limit (lake/frames.py, spilling beyond it),
then read back, checked against what the store holds and written `ONLINE_WRITE_BATCH` rows at
a time (Feast's own conversion holds about 9 KB a row of one call).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import pandas as pd
from pydantic import PrivateAttr
from sqlalchemy.engine import make_url

from shopsmart_assets.lake.frames import bounded_duckdb, partition_files
from shopsmart_assets.lake.metadata import PartitionData
from shopsmart_assets.resources.file_lock import exclusive
from shopsmart_assets.resources.process import import_feast_unchecked
from shopsmart_assets.settings import masked

if TYPE_CHECKING:
    from feast import FeatureStore

READ_BATCH = 10_000  # entities per online read (the freshness check)
# Rows per `write_to_online_store` call: Feast converts a call's rows in Python, about 9 KB a
# row at once (../docs/performance.md), at the same speed from 10k rows a call up.
ONLINE_WRITE_BATCH = 20_000
FEAST_VIEW = "shopsmart/feast_view"  # definition metadata: the Feast view over the asset's table
DAY_COLUMN, ORDER_COLUMN = "_day", "_order"
# A reserved customer id: its row in each view carries the view's watermark, the newest event
# time the platform has written there (`FeatureStoreResource.watermark`), in the store itself
# so that every writer, on any machine, sees it. Its features are zeros.
WATERMARK_ID = -(2**63)
PLACEHOLDER = {"int64": 0, "float64": 0.0, "bool": False, "string": ""}


class OnlineStoreUnavailable(RuntimeError):
    """The online store refused or did not answer (locked, down, unreachable): retried by the
    step's retry policy, then the step fails with this, naming the store."""


def feast_source(view: str) -> dict[str, str]:
    """Definition metadata: the asset's lake table is the source of this Feast view."""
    return {FEAST_VIEW: view}


def feast_view_assets(assets: Iterable[dg.AssetsDefinition]) -> dict[str, dg.AssetKey]:
    """Feast view → the asset whose lake table it reads, from the definitions."""
    return {
        str(spec.metadata[FEAST_VIEW]): spec.key
        for a in assets
        for spec in a.specs
        if FEAST_VIEW in spec.metadata
    }


def online_store_config(url: str) -> dict[str, Any]:
    """Feast's online store settings for a SQLAlchemy-style URL: `sqlite:///path`,
    `redis://[:password@]host:port[/db]` (`rediss://` for TLS) or
    `postgresql[+driver]://user:password@host:port/database[?sslmode=…&schema=…]`."""
    if url.startswith(("redis://", "rediss://")):
        return redis_config(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database:
            raise ValueError("the online store's SQLite URL needs a file: sqlite:///path/to.db")
        return {"type": "sqlite", "path": parsed.database}
    if parsed.get_backend_name() == "postgresql":
        query = dict(parsed.query)
        return {
            "type": "postgres",
            "host": parsed.host or "127.0.0.1",
            "port": parsed.port or 5432,
            "database": parsed.database,
            "user": parsed.username,
            "password": parsed.password or "",
            "db_schema": query.get("schema", "public"),
            "sslmode": query.get("sslmode", "prefer"),
        }
    raise ValueError(
        "the online store must be sqlite:///…, redis://… or postgresql://…, not "
        f"{parsed.get_backend_name()}"
    )


def redis_config(url: str) -> dict[str, Any]:
    """Feast's Redis settings: its connection string is `host:port,db=N,password=…`. Feast's
    own timestamp check is off (`skip_dedup`): it refuses a row as old as the one it holds,
    so a day written again (a late correction) would not replace its own values; the resource
    makes the same check before it writes, equal times allowed (`write_newest_of_days`)."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    db = parts.path.strip("/") or "0"
    if not db.isdigit():
        raise ValueError(f"a Redis online store's database is a number: {masked(url)}")
    params = [f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}", f"db={db}"]
    if parts.username:
        params.append(f"username={unquote(parts.username)}")
    if parts.password:
        params.append(f"password={unquote(parts.password)}")
    if parts.scheme == "rediss":
        params.append("ssl=true")
    return {"type": "redis", "connection_string": ",".join(params), "skip_dedup": True}


def registry_config(registry: str) -> dict[str, Any]:
    """A file path, or a SQLAlchemy URL for Feast's SQL registry."""
    if "://" in registry:
        return {"registry_type": "sql", "path": registry, "cache_ttl_seconds": 60}
    return {"registry_type": "file", "path": registry, "cache_ttl_seconds": 60}


def unavailable_errors() -> tuple[type[BaseException], ...]:
    """What an online store raises when it is locked, down or unreachable (not a bug)."""
    errors: list[type[BaseException]] = [sqlite3.OperationalError, OSError]
    try:
        import redis.exceptions

        errors += [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError]
    except ImportError:  # pragma: no cover - redis ships with the Celery extra
        pass
    try:
        import psycopg

        errors.append(psycopg.OperationalError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def newest_rows(
    days: Mapping[str, PartitionData], columns: list[str], batch_rows: int
) -> Iterator[pd.DataFrame]:
    """Each customer's newest row of the days' partition files (on equal event times, the
    later day's), `batch_rows` at a time, with the day it comes from in `_day`. DuckDB finds
    them within its memory limit, spilling beyond it."""
    from shopsmart_assets.feature_repo import ENTITY_KEY, EVENT_TIMESTAMP

    if not days:
        return
    selected = ", ".join(f'"{c}"' for c in columns)
    union = " UNION ALL ".join(
        f"SELECT {selected}, {order} AS {ORDER_COLUMN} FROM read_parquet(${order + 1})"
        for order in range(len(days))
    )
    query = (
        f"SELECT * FROM ({union}) QUALIFY row_number() OVER (PARTITION BY {ENTITY_KEY} "
        f"ORDER BY {EVENT_TIMESTAMP} DESC, {ORDER_COLUMN} DESC) = 1"
    )
    names = list(days)  # a row's day, by its position
    with bounded_duckdb() as connection:
        files = [partition_files(data) for data in days.values()]
        for batch in connection.sql(query, params=files).to_arrow_reader(batch_rows):
            frame = batch.to_pandas()
            frame[EVENT_TIMESTAMP] = pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True)
            frame[DAY_COLUMN] = [names[i] for i in frame.pop(ORDER_COLUMN)]
            yield frame


def write_ahead_log(path: Path) -> None:
    """Put a SQLite online store in write-ahead-log mode (a setting of the file, kept by every
    later connection, Feast's included): readers (the feature server, `shopsmart-features`)
    then never block the step writing it, nor it them; a rollback journal made a reader's
    open transaction hold a long write until "database is locked"."""
    connection = sqlite3.connect(path, timeout=30)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()


def newest_event_time(days: Mapping[str, PartitionData]) -> pd.Timestamp:
    """The newest event time in the days' partition files (NaT when they hold no rows)."""
    from shopsmart_assets.feature_repo import EVENT_TIMESTAMP

    with bounded_duckdb() as connection:
        [(newest,)] = connection.sql(
            f"SELECT max({EVENT_TIMESTAMP}) FROM read_parquet($1)",
            params=[[f for data in days.values() for f in partition_files(data)]],
        ).fetchall()
    return pd.to_datetime(newest, utc=True)


class FeatureStoreResource(dg.ConfigurableResource):
    """Feast's feature store over the lake: customer features and purchase-propensity scores,
    served by customer id."""

    online_store: str
    registry: str
    # Feast's working directory (its repo_path); local files default there.
    repo_dir: str
    # View name → the lake table directory it reads (derived from the asset definitions).
    view_tables: dict[str, str]
    _store: FeatureStore | None = PrivateAttr(default=None)

    def store_name(self) -> str:
        """The online store as the messages name it (its password masked)."""
        return masked(self.online_store)

    @contextmanager
    def answering(self, doing: str) -> Iterator[None]:
        """Turn the store's "locked", "refused" or "unreachable" into one error that names it
        (the step's retry policy tries again, with backoff, before the step fails)."""
        try:
            yield
        except unavailable_errors() as error:
            raise OnlineStoreUnavailable(
                f"Feast's online store {self.store_name()} did not answer while {doing}: "
                f"{type(error).__name__}: {str(error).strip() or 'no detail'}"
            ) from error

    def get_store(self) -> FeatureStore:
        """The FeatureStore, with the repository's objects applied (once per process)."""
        if self._store is None:
            import_feast_unchecked()
            from feast import FeatureStore
            from feast.repo_config import RepoConfig

            from shopsmart_assets.feature_repo import DELTA_OFFLINE_STORE, PROJECT
            from shopsmart_assets.feature_repo.repo import feature_repo_objects

            Path(self.repo_dir).mkdir(parents=True, exist_ok=True)
            for local in (self.registry, self.online_store.removeprefix("sqlite:///")):
                if "://" not in local:
                    Path(local).parent.mkdir(parents=True, exist_ok=True)
            config_of_store = online_store_config(self.online_store)
            if config_of_store["type"] == "sqlite":
                with self.answering("opening the store"):
                    write_ahead_log(Path(config_of_store["path"]))
            config = RepoConfig(
                project=PROJECT,
                provider="local",
                registry=registry_config(self.registry),
                online_store=config_of_store,
                offline_store={"type": DELTA_OFFLINE_STORE},
                entity_key_serialization_version=3,
                repo_path=Path(self.repo_dir),
            )
            tables = {name: Path(path) for name, path in self.view_tables.items()}
            # Feast's file registry is rewritten in place: steps of one run that apply at
            # the same time take turns (a SQL registry has transactions of its own).
            with (
                exclusive(Path(self.repo_dir) / ".apply.lock"),
                self.answering("applying the feature repository"),
            ):
                store = FeatureStore(config=config)
                store.apply(feature_repo_objects(tables))
            self._store = store
        return self._store

    def event_times(self, view: str, customer_ids: Iterable[int]) -> pd.Series:
        """The event time of each customer's row in the online store (NaT when none)."""
        from shopsmart_assets.feature_repo import ENTITY_KEY, VIEW_COLUMNS

        ids = [int(c) for c in customer_ids]
        column = next(iter(VIEW_COLUMNS[view]))
        seconds: list[int] = []
        store = self.get_store()
        for start in range(0, len(ids), READ_BATCH):
            batch = ids[start : start + READ_BATCH]
            with self.answering(f"reading {view}"):
                response = store.get_online_features(
                    features=[f"{view}:{column}"],
                    entity_rows=[{ENTITY_KEY: c} for c in batch],
                )
            seconds.extend(response.to_dict(include_event_timestamps=True)[f"{column}__ts"])
        times = pd.to_datetime(pd.Series(seconds, dtype="int64"), unit="s", utc=True)
        return times.where(pd.Series(seconds, dtype="int64") > 0)

    def watermark(self, view: str) -> pd.Timestamp:
        """The newest event time the platform has written (or is writing) to the view: the
        event time of the reserved entity WATERMARK_ID's row (NaT before the first write).
        No row online is newer."""
        return self.event_times(view, [WATERMARK_ID]).iloc[0]

    def raise_watermark(self, view: str, current: pd.Timestamp, newest: pd.Timestamp) -> None:
        """Move the view's watermark from `current` up to `newest`, before rows that new are
        written (so that it holds even when the write stops half way)."""
        from shopsmart_assets.feature_repo import ENTITY_KEY, EVENT_TIMESTAMP, VIEW_COLUMNS

        if pd.isna(newest) or (pd.notna(current) and current >= newest):
            return
        row = {ENTITY_KEY: [WATERMARK_ID], EVENT_TIMESTAMP: [newest]}
        # Feast refuses a row whose features are all empty: zeros of each type
        row |= {column: [PLACEHOLDER[kind]] for column, kind in VIEW_COLUMNS[view].items()}
        with self.answering(f"writing {view}"):
            self.get_store().write_to_online_store(view, pd.DataFrame(row))

    def write_newest_of_days(self, view: str, days: Mapping[str, PartitionData]) -> dict[str, int]:
        """Several days' rows of a view (day → its lake partition directory), leaving online
        what writing them one day after the other would: each customer's newest row (on equal
        event times, the later day's), unless the store holds a newer one. Bounded in memory
        by ONLINE_WRITE_BATCH rows and DuckDB's limit, whatever the days and customers.
        Returns each day's rows written; the others were superseded by a later day or by a
        fresher row already online. Writing the same days again leaves the same rows.

        What the store holds is read back only for rows older than the view's watermark (a
        backfill of past days): a nightly run, newer than anything online, writes without
        reading (reading costs as much as writing: Feast converts each row in Python). A
        view without a watermark (a new store, or one written by a release before
        watermarks) is read back until a batch's worth of rows finds none of its customers
        online (a new store), or wholly once one is found (an older release's store)."""
        from shopsmart_assets.feature_repo import ENTITY_KEY, EVENT_TIMESTAMP, VIEW_COLUMNS

        written = dict.fromkeys(days, 0)
        if not days:
            return written
        columns = [ENTITY_KEY, *VIEW_COLUMNS[view], EVENT_TIMESTAMP]
        store = self.get_store()
        watermark = self.watermark(view)
        self.raise_watermark(view, watermark, newest_event_time(days))
        # without a watermark: rows read back and found nowhere online, until a store's
        # worth of them (a batch) says it is new; one found online says it is not
        unseen, legacy = 0, False
        for rows in newest_rows(days, columns, ONLINE_WRITE_BATCH):
            older = (
                rows.index if pd.isna(watermark) else rows.index[rows[EVENT_TIMESTAMP] < watermark]
            )
            online = self.event_times(view, rows.loc[older, ENTITY_KEY]).set_axis(older)
            if pd.isna(watermark) and not legacy:
                legacy = bool(online.notna().any())
                unseen += 0 if legacy else len(rows)
                if unseen >= ONLINE_WRITE_BATCH:
                    # a batch of customers and none online: a new store (an older release's
                    # store holds most customers), nothing more to read
                    watermark = pd.Timestamp.min.tz_localize("UTC")
            staler = (online > rows.loc[older, EVENT_TIMESTAMP]).to_numpy()
            fresh = rows.drop(online.index[staler])
            if fresh.empty:
                continue
            with self.answering(f"writing {view}"):
                store.write_to_online_store(view, fresh.drop(columns=[DAY_COLUMN]))
            for day, count in fresh[DAY_COLUMN].value_counts().items():
                written[day] += int(count)
        return written

    def online(self, customer_ids: Iterable[int]) -> pd.DataFrame:
        """Every feature and the score of customers, in one lookup of the feature service."""
        from shopsmart_assets.feature_repo import ENTITY_KEY, FEATURE_SERVICE

        store = self.get_store()
        response = store.get_online_features(
            features=store.get_feature_service(FEATURE_SERVICE),
            entity_rows=[{ENTITY_KEY: int(c)} for c in customer_ids],
        )
        return response.to_df()

    def serve(self, host: str, port: int) -> None:
        """Feast's HTTP feature server (POST /get-online-features) until interrupted."""
        self.get_store().serve(host=host, port=port, type_="http", workers=1)
