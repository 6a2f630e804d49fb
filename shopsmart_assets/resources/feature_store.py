"""Feast as a Dagster resource: the feature store the online features and scores are served
from.

The online store is SQLite under the data dir by default and PostgreSQL in production
(`SHOPSMART_ONLINE_STORE_URL=postgresql://…`); the registry is a file by default or a SQL
registry (`SHOPSMART_FEAST_REGISTRY=postgresql+psycopg://…`). The repository's objects
(`shopsmart_assets.feature_repo`) are applied on first use in a process, so a new data dir or
database needs no separate `feast apply`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import pandas as pd
from pydantic import PrivateAttr
from sqlalchemy.engine import make_url

from shopsmart_assets.lake.locks import exclusive
from shopsmart_assets.resources.process import import_feast_unchecked

if TYPE_CHECKING:
    from feast import FeatureStore

READ_BATCH = 10_000
FEAST_VIEW = "shopsmart/feast_view"  # definition metadata: the Feast view over the asset's table


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
    """Feast's online store settings for a SQLAlchemy-style URL: `sqlite:///path` or
    `postgresql[+driver]://user:password@host:port/database[?sslmode=…&schema=…]`."""
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
        f"the online store must be sqlite:///… or postgresql://…, not {parsed.get_backend_name()}"
    )


def registry_config(registry: str) -> dict[str, Any]:
    """A file path, or a SQLAlchemy URL for Feast's SQL registry."""
    if "://" in registry:
        return {"registry_type": "sql", "path": registry, "cache_ttl_seconds": 60}
    return {"registry_type": "file", "path": registry, "cache_ttl_seconds": 60}


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

    def get_store(self) -> FeatureStore:
        """The FeatureStore, with the repository's objects applied (once per process)."""
        if self._store is None:
            import_feast_unchecked()
            from feast import FeatureStore
            from feast.repo_config import RepoConfig

            from shopsmart_assets.feature_repo import PROJECT
            from shopsmart_assets.feature_repo.repo import feature_repo_objects

            Path(self.repo_dir).mkdir(parents=True, exist_ok=True)
            for local in (self.registry, self.online_store.removeprefix("sqlite:///")):
                if "://" not in local:
                    Path(local).parent.mkdir(parents=True, exist_ok=True)
            config = RepoConfig(
                project=PROJECT,
                provider="local",
                registry=registry_config(self.registry),
                online_store=online_store_config(self.online_store),
                offline_store={"type": "duckdb"},
                entity_key_serialization_version=3,
                repo_path=Path(self.repo_dir),
            )
            tables = {name: Path(path) for name, path in self.view_tables.items()}
            # Feast's file registry is rewritten in place: steps of one run that apply at
            # the same time take turns (a SQL registry has transactions of its own).
            with exclusive(Path(self.repo_dir) / ".apply.lock"):
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
        for start in range(0, len(ids), READ_BATCH):
            batch = ids[start : start + READ_BATCH]
            response = self.get_store().get_online_features(
                features=[f"{view}:{column}"],
                entity_rows=[{ENTITY_KEY: c} for c in batch],
            )
            seconds.extend(response.to_dict(include_event_timestamps=True)[f"{column}__ts"])
        times = pd.to_datetime(pd.Series(seconds, dtype="int64"), unit="s", utc=True)
        return times.where(pd.Series(seconds, dtype="int64") > 0)

    def write_newest_of_days(self, view: str, frames: Mapping[str, pd.DataFrame]) -> dict[str, int]:
        """Several days' rows of a view in one write, leaving online what writing them one
        day after the other would: each customer's newest row (on equal event times, the
        later day's), unless the store holds a newer one. Returns each day's rows written;
        the others were superseded by a later day or by a fresher row already online."""
        from shopsmart_assets.feature_repo import ENTITY_KEY, EVENT_TIMESTAMP, VIEW_COLUMNS

        written = dict.fromkeys(frames, 0)
        columns = [ENTITY_KEY, *VIEW_COLUMNS[view], EVENT_TIMESTAMP]
        parts = [f.loc[:, columns].assign(_day=k) for k, f in frames.items() if not f.empty]
        if not parts:
            return written
        rows = pd.concat(parts, ignore_index=True)
        rows[EVENT_TIMESTAMP] = pd.to_datetime(rows[EVENT_TIMESTAMP], utc=True)
        order = {day: position for position, day in enumerate(frames)}
        rows["_order"] = rows["_day"].map(order)
        rows = rows.sort_values([EVENT_TIMESTAMP, "_order"], kind="stable")
        rows = rows.drop_duplicates(ENTITY_KEY, keep="last")
        online = self.event_times(view, rows[ENTITY_KEY]).set_axis(rows.index)
        fresh = rows[online.isna() | (rows[EVENT_TIMESTAMP] >= online)]
        if not fresh.empty:
            self.get_store().write_to_online_store(view, fresh.drop(columns=["_day", "_order"]))
        for day, count in fresh["_day"].value_counts().items():
            written[day] = int(count)
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
