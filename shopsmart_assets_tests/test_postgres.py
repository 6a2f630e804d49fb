"""PostgreSQL as the CRM and orders sources and as Dagster's instance storage.

A real server, started by `scripts/postgres.sh` for this test run and stopped after it
(postgres_server.py): the demo generator writes to it, extraction streams from it through a
server-side cursor with bound parameters, the whole chain on it gives the same lake as on
SQLite sources made with the same seed, and `dagster dev` on `dagster.postgres.yaml` runs and
records a real backfill in it.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from deltalake import DeltaTable

from shopsmart_assets import settings
from shopsmart_assets.cli.backfill import LAUNCH
from shopsmart_assets.cli.backfill import succeeded as backfill_succeeded
from shopsmart_assets.cli.backfill import wait as backfill_wait
from shopsmart_assets.cli.demo import main as demo_main
from shopsmart_assets.cli.devserver import dagster_dev, graphql, is_up
from shopsmart_assets.lake import ZONES
from shopsmart_assets.resources import SourceDatabase, build_resources
from shopsmart_assets.resources.sources import source_engine, source_url
from shopsmart_assets.sources.extract import CRM_INTERACTIONS, ORDERS, read_chunks, window_params
from shopsmart_assets_tests import reconcile
from shopsmart_assets_tests.harness import (
    DAILY,
    HOURLY,
    START,
    Platform,
    files_containing,
    in_memory_instance,
)
from shopsmart_assets_tests.postgres_server import PostgresServer

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[1]
DAY1, DAY2 = START, START + timedelta(days=1)
SEED = "23"


def demo(crm_url: str, orders_url: str, days: int, orders_per_day: int) -> None:
    """Sources written by the `shopsmart-demo` command."""
    args = ["--crm-url", crm_url, "--orders-url", orders_url, "--start-date", str(START)]
    args += ["--days", str(days), "--orders-per-day", str(orders_per_day), "--seed", SEED]
    assert demo_main(args) == 0


# --- configuration, no server needed -----------------------------------------------------------


def test_postgres_profile_is_dagster_yaml_on_postgres_storage():
    local = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    profile = yaml.safe_load((ROOT / "dagster.postgres.yaml").read_text())
    db = profile["storage"]["postgres"]["postgres_db"]
    assert db == {
        "hostname": {"env": "DAGSTER_PG_HOST"},
        "port": {"env": "DAGSTER_PG_PORT"},
        "username": {"env": "DAGSTER_PG_USER"},
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "db_name": {"env": "DAGSTER_PG_DB"},
        "scheme": "postgresql+psycopg2",
    }
    assert profile["run_coordinator"]["class"] == "QueuedRunCoordinator"
    # pools, run concurrency, run retries and monitoring: the same as the local profile
    shared = {k: v for k, v in profile.items() if k not in {"storage", "run_coordinator"}}
    assert shared == {k: v for k, v in local.items() if k not in {"storage", "run_coordinator"}}
    assert shared["concurrency"]["pools"]["default_limit"] >= 1


def test_driverless_postgres_urls_use_psycopg():
    for url in ("postgresql://u:secret@db:5432/crm", "postgres://u:secret@db/crm"):
        parsed = source_url(url)
        assert parsed.drivername == "postgresql+psycopg"
        assert (parsed.username, parsed.password, parsed.database) == ("u", "secret", "crm")
    assert source_url("postgresql+psycopg2://u@db/crm").drivername == "postgresql+psycopg2"
    assert source_url("sqlite:///x.db").drivername == "sqlite"


# --- sources on PostgreSQL ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_sources(pg: PostgresServer) -> tuple[str, str]:
    """2 days of demo sources in the server's crm and orders databases."""
    crm_url, orders_url = pg.create_database("crm"), pg.create_database("orders")
    demo(crm_url, orders_url, days=2, orders_per_day=150)
    return crm_url, orders_url


def test_generator_indexes_the_time_columns(pg_sources):
    crm_url, orders_url = pg_sources
    indexed: dict[str, set[str]] = {}
    for url in (crm_url, orders_url):
        engine = source_engine(url)
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                    "AND tablename IN ('customers', 'interactions', 'orders', 'order_items')"
                )
            ).all()
        engine.dispose()
        for table, definition in rows:
            # single-column btree indexes: "... USING btree (ordered_at)"
            column = definition.rsplit("(", 1)[1].rstrip(")")
            indexed.setdefault(table, set()).add(column)
    assert indexed["customers"] >= {"signup_at"}
    assert indexed["interactions"] >= {"occurred_at"}
    assert indexed["orders"] >= {"ordered_at", "updated_at", "order_id"}
    assert indexed["order_items"] >= {"order_id"}


def test_extraction_streams_from_a_server_side_cursor_with_bound_parameters(pg_sources):
    _, orders_url = pg_sources
    # a driver-less URL, as an operator may well write it
    url = orders_url.replace("postgresql+psycopg://", "postgresql://")
    engine = SourceDatabase(name="orders", url=url).get_engine()
    assert engine.dialect.driver == "psycopg"
    executed: list[tuple[str, object, str]] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        executed.append((statement, parameters, type(cursor).__name__))

    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    params = window_params(start, start + timedelta(days=1))
    with engine.connect() as connection:
        expected = connection.execute(
            sa.text(
                "SELECT count(*) FROM orders WHERE ordered_at >= '2026-01-01' "
                "AND ordered_at < '2026-01-02'"
            )
        ).scalar()
    executed.clear()

    observer = source_engine(orders_url, isolation_level="AUTOCOMMIT")
    chunks = read_chunks(engine, ORDERS, params, chunk_rows=40)
    first = next(chunks)
    # While the extraction is between chunks, its session sits in an open transaction whose
    # last statement fetched the next rows from a server-side cursor.
    with observer.connect() as connection:
        activity = (
            connection.execute(
                sa.text(
                    "SELECT query FROM pg_stat_activity WHERE datname = 'orders' "
                    "AND pid <> pg_backend_pid() AND state = 'idle in transaction'"
                )
            )
            .scalars()
            .all()
        )
    sizes = [len(first)] + [len(chunk) for chunk in chunks]
    observer.dispose()
    engine.dispose()

    fetches = [re.match(r"FETCH FORWARD (\d+) FROM", q) for q in activity]
    assert [m for m in fetches if m and 0 < int(m[1]) <= 40], activity
    assert sum(sizes) == expected > 80 and max(sizes) == 40 and len(sizes) >= 3
    [(statement, bound, cursor)] = executed
    assert cursor == "ServerCursor"
    assert "%(start)s" in statement and "%(end)s" in statement and "2026" not in statement
    assert bound == {"start": datetime(2026, 1, 1), "end": datetime(2026, 1, 2)}


@pytest.mark.parametrize(
    ("extraction", "index"),
    [(ORDERS, "ix_orders_ordered_at"), (CRM_INTERACTIONS, "ix_interactions_occurred_at")],
)
def test_extraction_windows_can_use_the_time_indexes(pg_sources, extraction, index):
    """The window predicates are sargable: with sequential scans priced out, PostgreSQL
    answers the extraction query from the time column's index."""
    crm_url, orders_url = pg_sources
    engine = source_engine(crm_url if extraction.source == "crm" else orders_url)
    with engine.connect() as connection:
        connection.execute(sa.text("SET enable_seqscan = off"))
        plan = connection.execute(
            sa.text(f"EXPLAIN {extraction.sql}"),
            {"start": datetime(2026, 1, 1, 10), "end": datetime(2026, 1, 1, 11)},
        ).scalars()
        plan_text = "\n".join(plan)
    engine.dispose()
    assert index in plan_text, plan_text


# --- the same lake from PostgreSQL and from SQLite ---------------------------------------------


def lake_tables(lake: Path) -> dict[str, pd.DataFrame]:
    """Every data table of the lake (zone/table), its current version's rows sorted,
    partition columns included (not the models zone: its records name MLflow runs)."""
    tables = {}
    for zone in (z for z in ZONES if z != "models"):
        for table_dir in sorted(p for p in (lake / zone).glob("*") if p.is_dir()):
            if not (table_dir / "_delta_log").is_dir():
                continue
            frame = DeltaTable(str(table_dir)).to_pandas()
            frame = frame[sorted(frame.columns)]
            tables[f"{zone}/{table_dir.name}"] = frame.sort_values(
                list(frame.columns), na_position="first"
            ).reset_index(drop=True)
    return tables


@pytest.fixture(scope="module")
def two_lakes(
    pg: PostgresServer, pg_sources, spark, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, Path, list]]:
    """The whole chain for 2 days twice: on the PostgreSQL sources, with Feast's online store
    and SQL registry on PostgreSQL (the production profile, through the environment variables
    the code location reads), and on SQLite sources generated with the same seed with Feast on
    its local defaults. Yields both data dirs and both feature stores."""
    crm_url, orders_url = pg_sources
    root = tmp_path_factory.mktemp("two_lakes")
    on_sqlite, on_postgres = root / "sqlite", root / "postgres"
    on_sqlite.mkdir()
    on_postgres.mkdir()
    demo(f"sqlite:///{on_sqlite / 'crm.db'}", f"sqlite:///{on_sqlite / 'orders.db'}", 2, 150)

    with in_memory_instance() as instance:
        sqlite_platform = Platform(
            on_sqlite,
            f"sqlite:///{on_sqlite / 'crm.db'}",
            f"sqlite:///{on_sqlite / 'orders.db'}",
            instance,
        )
        assert sqlite_platform.materialize_days(DAY1, DAY2).success
    with in_memory_instance() as instance, pytest.MonkeyPatch.context() as env:
        env.setenv("SHOPSMART_DATA_DIR", str(on_postgres))
        env.setenv(settings.CRM_URL_VAR, crm_url)
        env.setenv(settings.ORDERS_URL_VAR, orders_url)
        env.setenv(settings.ONLINE_STORE_URL_VAR, pg.create_database("feast_online"))
        env.setenv(settings.FEAST_REGISTRY_VAR, pg.create_database("feast_registry"))
        # the sources and Feast exactly as the code location configures them from the
        # environment
        postgres_platform = Platform(on_postgres, "unused://", "unused://", instance)
        configured = build_resources(postgres_platform.assets)
        sources = {key: configured[key] for key in ("crm_db", "orders_db", "feature_store")}
        for url in (
            sources["crm_db"].url,
            sources["orders_db"].url,
            sources["feature_store"].online_store,
            sources["feature_store"].registry,
        ):
            assert isinstance(url, dg.EnvVar)  # never a plain (visible) string
        postgres_platform.materialize(HOURLY, f"{DAY1}-00:00", f"{DAY2}-23:00", **sources)
        assert postgres_platform.materialize(DAILY, str(DAY1), str(DAY2), **sources).success
        feature_stores = [
            sqlite_platform.feature_store,
            sources["feature_store"].process_config_and_initialize(),
        ]
    yield on_sqlite, on_postgres, feature_stores


def test_chain_on_postgres_gives_the_same_lake_as_on_sqlite(two_lakes):
    on_sqlite, on_postgres, feature_stores = two_lakes
    expected, actual = lake_tables(on_sqlite / "lake"), lake_tables(on_postgres / "lake")
    assert set(actual) == set(expected)
    assert {"raw/orders", "raw/order_items", "raw/crm_customers", "raw/crm_interactions"} <= set(
        expected
    )
    assert {"curated/purchases", "quarantine/purchases", "features/customer_features"} <= set(
        expected
    )
    counts = {}
    for name, frame in expected.items():
        pd.testing.assert_frame_equal(actual[name], frame, check_exact=True, obj=name)
        counts[name] = len(frame)
    # and Feast's online stores they fed (SQLite, and PostgreSQL with a SQL registry) serve
    # the same values, those of the newest day's features
    customers = sorted(expected["features/customer_features"]["customer_id"].unique().tolist())
    served = [
        store.online(customers).sort_values("customer_id").reset_index(drop=True)
        for store in feature_stores
    ]
    served = [frame[sorted(frame.columns)] for frame in served]
    pd.testing.assert_frame_equal(served[0], served[1], check_exact=True)
    features = expected["features/customer_features"]
    newest = features[features["date"].astype(str) == str(DAY2)]
    assert len(served[1]) == len(newest) > 500
    assert served[1]["monetary_90d"].sum() == pytest.approx(newest["monetary_90d"].sum())
    counts["online_store"] = len(served[1])
    print("rows compared per lake table:", counts)
    assert counts["curated/purchases"] > 300 and counts["raw/orders"] > 250
    # and the SQLite lake is the right one: reconciled independently with its sources
    for day in (DAY1, DAY2):
        reconcile.assert_lake_reconciles(
            on_sqlite / "lake", on_sqlite / "crm.db", on_sqlite / "orders.db", day
        )


# --- Dagster's instance on PostgreSQL ----------------------------------------------------------

EXTRACTS = {
    "raw/orders": "hourly",
    "raw/order_items": "hourly",
    "raw/crm_customers": "daily",
    "raw/crm_interactions": "daily",
}


def postgres_text_containing(url: str, needle: str) -> list[str]:
    """Every text column of every table in the database at `url` that holds `needle`."""
    engine = source_engine(url)
    found = []
    with engine.connect() as connection:
        columns = connection.execute(
            sa.text(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND data_type IN ('text', 'character varying')"
            )
        ).all()
        for table, column in columns:
            hits = connection.execute(
                sa.text(f'SELECT count(*) FROM "{table}" WHERE "{column}" LIKE :pattern'),
                {"pattern": f"%{needle}%"},
            ).scalar()
            if hits:
                found.append(f"{table}.{column}")
    engine.dispose()
    assert len(columns) > 20, columns  # Dagster's tables are really there
    return found


@pytest.mark.e2e
def test_backfill_through_dagster_dev_on_the_postgres_instance(pg: PostgresServer, tmp_path: Path):
    """`dagster dev` (webserver + daemon) on dagster.postgres.yaml runs a partition backfill
    of the extracts (PostgreSQL sources too) launched like the UI launches it, and records
    everything in PostgreSQL. (test_end_to_end.py backfills the whole chain on the default
    SQLite instance; the Spark steps do not care where Dagster keeps its records.)"""
    data, home = tmp_path / "data", tmp_path / "home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.postgres.yaml", home / "dagster.yaml")
    pg.create_database("dagster_backfill")
    crm_url, orders_url = pg.create_database("crm_e2e"), pg.create_database("orders_e2e")
    demo(crm_url, orders_url, days=1, orders_per_day=100)
    env = {
        **pg.dagster_env("dagster_backfill"),
        "SHOPSMART_DATA_DIR": str(data),
        "SHOPSMART_TIMEZONE": "UTC",
        "SHOPSMART_START_DATE": str(START),
        settings.CRM_URL_VAR: crm_url,
        settings.ORDERS_URL_VAR: orders_url,
    }
    hours = {"start": f"{DAY1}-00:00", "end": f"{DAY1}-23:00"}
    day = {"start": str(DAY1), "end": str(DAY1)}
    params = {
        "title": "extracts on postgres",
        "partitionsByAssets": [
            {
                "assetKey": {"path": key.split("/")},
                "partitions": {"range": hours if kind == "hourly" else day},
            }
            for key, kind in EXTRACTS.items()
        ],
    }
    began = time.monotonic()
    with dagster_dev(home, env=env) as url:
        answer = graphql(url, LAUNCH, {"params": params})["launchPartitionBackfill"]
        assert answer["__typename"] == "LaunchBackfillSuccess", answer
        state = backfill_wait(url, answer["backfillId"], timeout=300, poll=2)
        assert backfill_succeeded(state), state
    assert not is_up(url)
    print(
        f"dagster dev + backfill of the extracts on the Postgres instance: "
        f"{time.monotonic() - began:.0f}s"
    )

    with pytest.MonkeyPatch.context() as monkeypatch:
        for key, value in pg.dagster_env("dagster_backfill").items():
            monkeypatch.setenv(key, value)
        instance = dg.DagsterInstance.from_config(str(home))
        try:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            for key, kind in EXTRACTS.items():
                partitions = instance.get_materialized_partitions(dg.AssetKey.from_user_string(key))
                assert len(partitions) == (24 if kind == "hourly" else 1), key
            [backfill] = instance.get_backfills()
            assert {k.to_user_string() for k in backfill.asset_selection} == set(EXTRACTS)
            assert backfill.status.value in {"COMPLETED", "COMPLETED_SUCCESS"}
            runs = instance.get_runs()
            assert runs and {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
        finally:
            instance.dispose()
    assert not list(home.rglob("*.db")), list(home.rglob("*.db"))  # nothing in SQLite

    # the raw zone holds the day exactly as the PostgreSQL source does
    source = source_engine(orders_url)
    with source.connect() as connection:
        source_orders = connection.execute(
            sa.text("SELECT count(*) FROM orders WHERE ordered_at >= :a AND ordered_at < :b"),
            {"a": datetime(2026, 1, 1), "b": datetime(2026, 1, 2)},
        ).scalar()
    source.dispose()
    [(landed,)] = reconcile.lake_sql(
        data / "lake", f"SELECT count(*) FROM (SELECT * FROM raw__orders WHERE date = '{DAY1}')"
    )
    assert landed == source_orders > 50
    # the database password went in through the environment only
    assert postgres_text_containing(pg.url("dagster_backfill"), pg.password) == []
    assert files_containing(home, pg.password) == []
    assert files_containing(data, pg.password) == []
