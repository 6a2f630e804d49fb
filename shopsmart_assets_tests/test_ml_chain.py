"""The ML end of the chain over 10 days: a model is trained, tracked in MLflow, registered and
promoted with the `champion` alias; the blocking check keeps a model below the bar out of
service; every customer is scored daily, and Feast serves features and scores by key."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from shopsmart_assets.defs.automation.recovery import WatchedAssets, late_data_request
from shopsmart_assets.defs.column_catalog import PARTITION_COLUMNS, TABLES
from shopsmart_assets.defs.features.assets import CUSTOMER_FEATURES_KEY
from shopsmart_assets.defs.links import asset_url
from shopsmart_assets.defs.ml import (
    CHAMPION_MODEL_KEY,
    MEETS_BAR,
    PURCHASE_MODEL_KEY,
    PURCHASE_SCORES_KEY,
    TRAINING_SET_KEY,
)
from shopsmart_assets.lake import lake_tables
from shopsmart_assets.lake.delta import DeltaLakeTable, fingerprint
from shopsmart_assets.lake.maintenance import vacuum_tables
from shopsmart_assets.lake.metadata import column_schema_key
from shopsmart_assets.resources import PromotionPolicy, SourceDatabase
from shopsmart_assets.resources.model_registry import AliasMove
from shopsmart_assets_tests import reconcile
from shopsmart_assets_tests.harness import START, Platform, requested_partitions
from shopsmart_assets_tests.http_service import post_json, running
from shopsmart_assets_tests.spark_services import free_port

pytestmark = [pytest.mark.spark, pytest.mark.e2e]

DAY = timedelta(days=1)
LAST = START + 9 * DAY


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
    # the exact files of those partitions in the version of the table it read
    assert current_fingerprints(p) == trained_on
    version = meta["training_set_version"]
    table = DeltaLakeTable(p.root / "lake" / "features" / "training_set")
    assert {d.removeprefix("date="): fingerprint(f) for d, f in table.files(version).items()} == (
        trained_on
    )
    assert trained_on[str(START)] != trained_on[str(LAST)]
    record = p.model_record(str(LAST))
    assert record.metrics["auc"] == meta["auc"]
    assert record.trained_on == trained_on
    # the first labelled day has no history to train on
    assert model_metadata(p, START + timedelta(days=7))["trained"] is False


def test_each_model_partition_is_one_mlflow_run_and_a_registered_version(ten_days, tmp_path):
    p = ten_days
    registry = p.model_registry
    client = registry.get_client()
    meta = model_metadata(p, LAST)
    record = p.model_record(str(LAST))
    run = client.get_run(record.mlflow_run_id)
    # the run's parameters: hyper-parameters, partitions, Dagster run; metrics as recorded
    assert run.data.params["partition"] == str(LAST)
    assert run.data.params["train_partitions"] == f"{START}..{LAST - DAY}"
    assert run.data.params["max_iter"] == "150"
    assert run.data.params["dagster_run_id"] == run.data.tags["dagster.run_id"]
    assert run.data.metrics["auc"] == pytest.approx(meta["auc"])
    assert run.data.metrics["test_positive_rate"] == pytest.approx(meta["test_positive_rate"])
    downloaded = client.download_artifacts(run.info.run_id, "trained_on.json", str(tmp_path))
    recorded = json.loads(Path(downloaded).read_text())
    assert recorded["table"] == "features/training_set"
    assert recorded["version"] == meta["training_set_version"]
    assert {k: v["fingerprint"] for k, v in recorded["partitions"].items()} == meta["trained_on"]
    assert all(v["files"] for v in recorded["partitions"].values())
    # MLflow's dataset inputs name the Delta table and its version
    sources = [json.loads(i.dataset.source) for i in run.inputs.dataset_inputs]
    assert sources and all(s["delta_table_version"] == recorded["version"] for s in sources)
    # its model is a registered version with a signature taking feature rows
    version = client.get_model_version(registry.model_name, str(record.model_version))
    assert version.run_id == run.info.run_id and meta["model_version"] == int(version.version)
    assert meta["mlflow_run"].endswith(f"/runs/{run.info.run_id}")
    model = registry.load_model(int(version.version))
    inputs = [c["name"] for c in model.metadata.get_input_schema().to_dict()]
    assert "segment" in inputs and "monetary_90d" in inputs
    # untrained days are runs without a model
    untrained = p.model_record(str(START + 7 * DAY))
    assert untrained.model_version is None
    assert client.get_run(untrained.mlflow_run_id).data.tags["trained"] == "false"
    # one run per partition and data version: materializing the day again adds nothing
    versions = len(client.search_model_versions(f"name = '{registry.model_name}'"))
    p.materialize(["ml/purchase_model"], str(LAST))
    assert len(client.search_model_versions(f"name = '{registry.model_name}'")) == versions


def test_champion_alias_points_at_the_newest_promoted_model(ten_days):
    p = ten_days
    registry = p.model_registry
    champion = p.champion(str(LAST)).champion
    assert champion is not None
    record = {"model_version": champion.model_version}
    assert registry.alias_version("champion") == record["model_version"]
    assert p.instance.get_materialized_partitions(CHAMPION_MODEL_KEY) >= {str(LAST)}
    # the chain's run set the alias for the first time: its newest day says it moved, from none
    [first] = [
        m for m in materializations(p, "ml/champion_model")[::-1] if m.partition_key == str(LAST)
    ][:1]
    metadata = first.asset_materialization.metadata
    assert metadata["alias_moved"].value is True
    assert "previous_champion_version" not in metadata
    # a backfill of an older day leaves the registry's champion where it is
    p.materialize(["ml/champion_model"], str(LAST - DAY))
    assert registry.alias_version("champion") == record["model_version"]
    # promote, then roll back with one call: the aliases swap
    other = next(
        int(v.version)
        for v in registry.get_client().search_model_versions(f"name = '{registry.model_name}'")
        if int(v.version) != record["model_version"]
    )
    assert registry.promote(other) == AliasMove(moved=True, previous=record["model_version"])
    assert registry.promote(other) == AliasMove(moved=False, previous=other)  # nothing to do
    assert registry.alias_version("previous-champion") == record["model_version"]
    assert registry.rollback() == (record["model_version"], other)
    assert registry.alias_version("champion") == record["model_version"]


def test_blocking_check_keeps_a_weak_model_out(ten_days):
    p = ten_days
    before = p.champion(str(LAST))
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
    assert p.champion(str(LAST)) == before


STANDING_ORDERS_SQL = """
WITH versions AS MATERIALIZED (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY order_id ORDER BY updated_at DESC, status) AS v
  FROM orders),
good AS MATERIALIZED (
  SELECT DISTINCT order_id FROM order_items
  WHERE quantity > 0 AND unit_price > 0 AND product_id IS NOT NULL)
SELECT count(DISTINCT order_id) FROM versions
WHERE v = 1 AND customer_id = :customer AND status NOT IN ('refunded', 'cancelled')
  AND currency IN ('USD', 'EUR', 'GBP', 'CAD') AND order_id IN (SELECT order_id FROM good)
  AND ordered_at >= :lo AND ordered_at < :hi
"""


def standing_orders(p: Platform, customer: int, first, last) -> int:
    """Orders of a customer placed first..last that stood, by SQL over the source alone."""
    with sqlite3.connect(p.root / "orders.db") as db:
        return db.execute(
            STANDING_ORDERS_SQL,
            {"customer": customer, "lo": f"{first} 00:00:00", "hi": f"{last + DAY} 00:00:00"},
        ).fetchone()[0]


def lake_value(p: Platform, sql: str):
    [(value,)] = reconcile.lake_sql(p.root / "lake", sql)
    return value


def test_a_late_refund_reaches_every_feature_training_example_and_the_online_store(ten_days):
    """A refund of an order of day 5, arriving after day 10 was loaded, is re-extracted with
    its day, and every partition whose inputs include day 5 is rebuilt: the features of days
    5..10 (90-day windows), the training sets whose label window holds day 5, the online store
    and the model in service. Checked against SQL over the source, independently."""
    p = ten_days
    changed_day = START + 4 * DAY
    with sqlite3.connect(p.root / "orders.db") as db:
        # a customer with exactly one order that stood over the ten days, placed on day 5
        candidates = [
            r[0]
            for r in db.execute(
                "SELECT customer_id FROM orders WHERE ordered_at >= ? AND ordered_at < ? "
                "AND status = 'placed' AND customer_id < 900000000 GROUP BY customer_id "
                "ORDER BY customer_id",
                (f"{changed_day} 00:00:00", f"{changed_day + DAY} 00:00:00"),
            )
        ]
    first_labelled = START + 7 * DAY
    known_since_start = {
        row[0]
        for row in reconcile.lake_sql(
            p.root / "lake",
            "SELECT customer_id FROM (SELECT * FROM features__training_set WHERE date = "
            f"'{first_labelled}')",
        )
    }
    customer = next(
        c
        for c in candidates
        if c in known_since_start
        and standing_orders(p, c, START, LAST) == 1
        and standing_orders(p, c, changed_day, changed_day) == 1
    )
    features_sql = (
        "SELECT frequency_90d FROM (SELECT * FROM features__customer_features WHERE date = '{day}')"
        f" WHERE customer_id = {customer}"
    )
    label_sql = (
        "SELECT label FROM (SELECT * FROM features__training_set WHERE date = '{day}')"
        f" WHERE customer_id = {customer}"
    )
    assert lake_value(p, features_sql.format(day=LAST)) == 1
    label_days = [START + k * DAY for k in range(7, 10)]  # the training sets there are
    assert [lake_value(p, label_sql.format(day=d)) for d in label_days] == [1, 1, 1]

    # The refund, as the orders system records it, after everything was loaded.
    with sqlite3.connect(p.root / "orders.db") as db:
        db.execute(
            "UPDATE orders SET status = 'refunded', updated_at = ? WHERE customer_id = ? "
            "AND ordered_at >= ? AND ordered_at < ?",
            (
                f"{LAST + DAY} 05:00:00",
                customer,
                f"{changed_day} 00:00:00",
                f"{changed_day + DAY} 00:00:00",
            ),
        )
    now = datetime.combine(LAST + DAY, datetime.min.time(), tzinfo=timezone.utc) + timedelta(
        hours=6
    )
    chain = WatchedAssets(p.graph, p.partitions)
    orders = SourceDatabase(name="orders", url=p.orders_url)
    request, _ = late_data_request(p.instance, now, orders, p.lake, None, chain)
    partitions = {k.to_user_string(): v for k, v in requested_partitions(request).items()}
    days = [str(START + k * DAY) for k in range(4, 10)]
    assert partitions["lake/purchases"] == [str(changed_day)]
    assert partitions["features/customer_features"] == days
    assert partitions["ml/training_set"] == days
    for serving in ("features/online_store", "ml/purchase_model", "ml/champion_model"):
        assert partitions[serving] == [str(LAST)]
    assert p.run_backfill(partitions) <= 8  # a handful of runs, each asset over its range

    # features: every day from the refund on counts what the source says stood
    for k in range(0, 10):
        day = START + k * DAY
        expected = standing_orders(p, customer, max(START, day - 89 * DAY), day)
        assert lake_value(p, features_sql.format(day=day)) == expected, day
    assert lake_value(p, features_sql.format(day=LAST)) == 0
    # training sets: the label is whether an order stood in the 7 days the label covers
    for day in label_days:
        expected = int(standing_orders(p, customer, day - 6 * DAY, day) > 0)
        assert lake_value(p, label_sql.format(day=day)) == expected == 0, day
    # the online store serves the refunded state
    [served] = p.feature_store.online([customer]).to_dict("records")
    assert served["frequency_90d"] == 0
    # and every day still reconciles with the source
    for k in range(10):
        reconcile.assert_lake_reconciles(
            p.root / "lake", p.root / "crm.db", p.root / "orders.db", START + k * DAY
        )


def reproduce(p: Platform, version: int) -> subprocess.CompletedProcess:
    """`shopsmart-model reproduce VERSION`, as a user runs it on this data dir."""
    command = Path(sys.executable).with_name("shopsmart-model")
    env = {
        **os.environ,
        "SHOPSMART_DATA_DIR": str(p.root),
        "SHOPSMART_START_DATE": str(START),
        "SHOPSMART_TIMEZONE": "UTC",
    }
    return subprocess.run(
        [str(command), "reproduce", str(version)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def current_fingerprints(p: Platform) -> dict[str, str]:
    """Each training-set partition's fingerprint (its files) in the table's current version."""
    table = DeltaLakeTable(p.root / "lake" / "features" / "training_set")
    return {
        subpath.removeprefix("date="): fingerprint(files)
        for subpath, files in table.files().items()
    }


def test_registered_versions_are_rebuilt_exactly_from_the_data_they_learned_from(ten_days):
    """After the late refund rebuilt the training sets of its days, the model registered
    before it learned from a version of the table that is no longer current: it is still
    rebuilt exactly (metrics and predictions) by time travel, and so is the new one."""
    p = ten_days
    registry = p.model_registry
    numbers = sorted(
        int(v.version)
        for v in registry.get_client().search_model_versions(f"name = '{registry.model_name}'")
    )
    current = current_fingerprints(p)
    learned = {n: registry.trained_on(n) for n in numbers}
    rebuilt = [n for n in numbers if any(current[d] != f for d, f in learned[n].partitions.items())]
    untouched = [n for n in numbers if n not in rebuilt]
    assert rebuilt and untouched, learned  # some learned from data replaced since, some not
    for number in (rebuilt[-1], untouched[-1]):
        done = reproduce(p, number)
        assert done.returncode == 0, done.stdout + done.stderr[-3000:]
        assert "reproduced exactly" in done.stdout and "auc" in done.stdout
    # the version it learned from is any reader's by time travel, with its own labels
    old = learned[rebuilt[-1]]
    assert old.table == "features/training_set" and old.version is not None
    day = max(d for d, f in old.partitions.items() if current[d] != f)  # one with labels
    table = str(p.root / "lake" / old.table)
    then = DeltaTable(table, version=old.version).to_pandas(filters=[("date", "=", day)])
    now = DeltaTable(table).to_pandas(filters=[("date", "=", day)])
    assert len(then) > 0 and then["label"].sum() != now["label"].sum()  # the refund's labels
    # a version the registry never had: one line that says so, exit 2 (no traceback)
    missing = reproduce(p, numbers[-1] + 1000)
    assert missing.returncode == 2, missing.stdout + missing.stderr[-3000:]
    assert f"version {numbers[-1] + 1000} does not exist" in missing.stdout
    assert "Traceback" not in missing.stdout + missing.stderr


def test_a_glob_reads_old_versions_and_gc_keeps_what_models_learned_from(ten_days):
    """A plain glob over a table's directory also reads the files of replaced versions;
    the table's current version is what its log lists. Vacuum at retention 0 deletes every
    replaced file but those of the versions registered models learned from, which stay
    reproducible; a pinned file removed by hand is named by the reproduction."""
    p = ten_days
    lake = p.root / "lake"
    location = "features/training_set"
    table = DeltaLakeTable(lake / location)
    listed = {f for files in table.files().values() for f in files}
    on_disk = {str(f.relative_to(table.path)) for f in table.path.rglob("*.parquet")}
    assert listed < on_disk  # the late refund's rebuild left the old files beside the new
    [(globbed,)] = lake_rows(p, f"SELECT count(*) FROM read_parquet('{table.path}/*/*.parquet')")
    [(current_rows,)] = lake_rows(p, "SELECT count(*) FROM features__training_set")
    assert globbed > current_rows
    registry = p.model_registry
    pinned = registry.pinned_versions()
    assert set(pinned) == {location} and pinned[location]
    # the last day's training set written twice more: the first of them no model pins
    p.materialize(["ml/training_set"], str(LAST))
    unpinned = set(table.files()[f"date={LAST}"])
    p.materialize(["ml/training_set"], str(LAST))
    listed = {f for files in table.files().values() for f in files}
    [vacuumed] = vacuum_tables(lake, [location], pinned, timedelta(0))
    assert set(vacuumed.removed) == unpinned and vacuumed.freed_bytes > 0
    assert vacuumed.kept_versions == sorted(pinned[location])
    kept = {
        f for version in pinned[location] for files in table.files(version).values() for f in files
    }
    left = {str(f.relative_to(table.path)) for f in table.path.rglob("*.parquet")}
    assert left == kept | listed
    number = max(n for models in pinned[location].values() for n in models)
    assert reproduce(p, number).returncode == 0
    # a file of the version it learned from, removed by hand: reproduce names its partition
    trained_on = registry.trained_on(number)
    day = sorted(trained_on.partitions)[-1]
    for file in table.files(trained_on.version)[f"date={day}"]:
        (table.path / file).unlink()
    done = reproduce(p, number)
    assert done.returncode == 2, done.stdout + done.stderr[-2000:]
    assert f"{location} {day} (version {trained_on.version})" in done.stdout


def lake_rows(p: Platform, sql: str) -> list[tuple]:
    return reconcile.lake_sql(p.root / "lake", sql)


def champion_version(p: Platform, day) -> int | None:
    champion = p.champion(str(day)).champion
    return champion.model_version if champion else None


def test_every_customer_of_each_champion_day_is_scored_once(ten_days):
    """One score per customer of the day's CRM snapshot (SQL over the source CRM), by the
    day's champion, equal to what that registered model predicts on the lake's features."""
    p = ten_days
    crm = sqlite3.connect(p.root / "crm.db")
    scored_days = 0
    for k in range(10):
        day = START + k * DAY
        rows = lake_rows(
            p,
            "SELECT customer_id, score, model_version FROM scores__purchase_propensity "
            f"WHERE date = '{day}'",
        )
        version = champion_version(p, day)
        if version is None:
            assert rows == [], day
            continue
        scored_days += 1
        snapshot = {
            r[0]
            for r in crm.execute(
                "SELECT DISTINCT customer_id FROM customers "
                "WHERE customer_id IS NOT NULL AND signup_at < ?",
                (f"{day + DAY} 00:00:00",),
            )
        }
        ids = [r[0] for r in rows]
        assert len(ids) == len(set(ids)) and set(ids) == snapshot, day
        assert {r[2] for r in rows} == {version}
        assert all(0.0 <= r[1] <= 1.0 for r in rows)
    assert scored_days >= 1 and champion_version(p, LAST) is not None
    # the scores are the registered model's predictions on the day's features

    from shopsmart_assets.transforms.training import model_input

    day_features = p.frame("features/customer_features", str(LAST))
    model = p.model_registry.load_model(champion_version(p, LAST))
    predicted = model.predict(model_input(day_features))[:, 1]
    expected = dict(zip(day_features["customer_id"], predicted, strict=True))
    scores = p.frame("ml/purchase_scores", str(LAST))
    assert len(scores) == len(expected)
    for customer, score in zip(scores["customer_id"], scores["score"], strict=True):
        assert score == pytest.approx(expected[customer], abs=1e-12)
    check = [
        e
        for e in p.instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(["ml", "purchase_scores"]), asset_partitions=[str(LAST)]
            ),
            limit=1,
        ).records
    ]
    meta = check[0].asset_materialization.metadata
    assert meta["dagster/row_count"].value == len(scores)
    assert meta["model_version"].value == champion_version(p, LAST)
    assert meta["score_p50"].value == pytest.approx(scores["score"].quantile(0.5))


def newest_lake_values(p: Platform, customers: list[int]) -> dict[int, dict]:
    """Each customer's features and score as of the newest day, read from the lake alone."""
    ids = ", ".join(map(str, customers))
    features = lake_rows(
        p,
        "SELECT customer_id, frequency_90d, monetary_90d, recency_days, segment FROM "
        f"(SELECT * FROM features__customer_features WHERE date = '{LAST}') "
        f"WHERE customer_id IN ({ids})",
    )
    scores = dict(
        lake_rows(
            p,
            "SELECT customer_id, score FROM "
            f"(SELECT * FROM scores__purchase_propensity WHERE date = '{LAST}') "
            f"WHERE customer_id IN ({ids})",
        )
    )
    return {
        c: {
            "frequency_90d": f,
            "monetary_90d": m,
            "recency_days": r,
            "segment": s,
            "score": scores[c],
        }
        for c, f, m, r, s in features
    }


def sample_customers(p: Platform, n: int = 25) -> list[int]:
    return [
        r[0]
        for r in lake_rows(
            p,
            "SELECT customer_id FROM "
            f"(SELECT * FROM scores__purchase_propensity WHERE date = '{LAST}') "
            f"ORDER BY hash(customer_id) LIMIT {n}",
        )
    ]


def serving_env(p: Platform) -> dict[str, str]:
    """The environment of the platform's own commands, pointed at this data dir."""
    from shopsmart_assets_tests.spark_services import _FOREIGN

    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN}
    return {
        **env,
        "SHOPSMART_DATA_DIR": str(p.root),
        "SHOPSMART_START_DATE": str(START),
        "SHOPSMART_TIMEZONE": "UTC",
    }


def same(got, value) -> bool:
    """Equal values, or both missing (Feast gives None or NaN for a missing value)."""
    missing = [v is None or (isinstance(v, float) and v != v) for v in (got, value)]
    return all(missing) if any(missing) else got == pytest.approx(value)


def test_feast_serves_features_and_score_by_key_over_sdk_and_http(ten_days, tmp_path):
    p = ten_days
    customers = sample_customers(p)
    expected = newest_lake_values(p, customers)
    assert len(expected) == len(customers)
    # the SDK, through the platform's resource
    served = {r["customer_id"]: r for r in p.feature_store.online(customers).to_dict("records")}
    for customer, values in expected.items():
        for name, value in values.items():
            got = served[customer][name]
            assert same(got, value), (customer, name, got, value)
    # the console script
    done = subprocess.run(
        [str(Path(sys.executable).with_name("shopsmart-features")), str(customers[0]), "-1"],
        env=serving_env(p),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr[-2000:]  # customer -1 is unknown
    first, unknown = (json.loads(line) for line in done.stdout.splitlines())
    assert first["found"] and first["score"] == pytest.approx(expected[customers[0]]["score"])
    assert unknown == {**unknown, "customer_id": -1, "found": False}
    # Feast's HTTP feature server
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("shopsmart-features")),
        "serve",
        "--port",
        str(port),
    ]
    url = f"http://127.0.0.1:{port}"
    with running(command, serving_env(p), f"{url}/health", tmp_path / "feast.log"):
        answer = post_json(
            f"{url}/get-online-features",
            {"feature_service": "customer_propensity", "entities": {"customer_id": customers}},
        )
    names = answer["metadata"]["feature_names"]
    columns = {
        name: result["values"] for name, result in zip(names, answer["results"], strict=True)
    }
    for i, customer in enumerate(columns["customer_id"]):
        for name, value in expected[customer].items():
            got = columns[name][i]
            assert same(got, value), (customer, name, got, value)


def test_mlflow_scoring_server_returns_the_batch_scores(ten_days, tmp_path):

    from shopsmart_assets.transforms.training import model_input

    p = ten_days
    features = p.frame("features/customer_features", str(LAST)).head(40)
    scores = p.frame("ml/purchase_scores", str(LAST)).set_index("customer_id")
    rows = model_input(features)
    port = free_port()
    command = [str(Path(sys.executable).with_name("shopsmart-model")), "serve", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with running(command, serving_env(p), f"{url}/ping", tmp_path / "mlflow.log"):
        answer = post_json(
            f"{url}/invocations",
            {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))},
        )
    served = [pair[1] for pair in answer["predictions"]]
    batch = scores.loc[features["customer_id"], "score"].tolist()
    assert served == pytest.approx(batch, abs=1e-9)


def test_point_in_time_retrieval_through_feast_matches_the_lake(ten_days):
    """Feast's historical retrieval over the lake (DuckDB offline store) returns, for an
    instant during day D+1, the features as of D: never a later day's, every entity row kept."""
    import pandas as pd

    p = ten_days
    day = START + 5 * DAY
    customers = [
        r[0]
        for r in lake_rows(
            p,
            f"SELECT customer_id FROM features__customer_features WHERE date = '{day}'"
            " ORDER BY hash(customer_id) LIMIT 5",
        )
    ]
    during_next_day = datetime.combine(day + DAY, datetime.min.time(), timezone.utc)
    entity = pd.DataFrame(
        {
            "customer_id": [*customers, -1],
            "event_timestamp": pd.Timestamp(during_next_day + timedelta(hours=13)),
        }
    )
    found = (
        p.feature_store.get_store()
        .get_historical_features(entity_df=entity, features=["customer_features:monetary_90d"])
        .to_df()
        .set_index("customer_id")["monetary_90d"]
    )
    assert len(found) == len(entity)  # the unknown customer too, with nothing known
    assert pd.isna(found.loc[-1])
    ids = ", ".join(map(str, customers))
    expected = dict(
        lake_rows(
            p,
            "SELECT customer_id, monetary_90d FROM features__customer_features "
            f"WHERE date = '{day}' AND customer_id IN ({ids})",
        )
    )
    for customer in customers:
        assert found.loc[customer] == pytest.approx(expected[customer]), customer


# What the Dagster UI shows of the chain: every column documented, the numbers users plot over
# partitions on every materialization, links to what made a model.

# Per asset, the metadata users plot over partitions (asset page → Plots).
PLOTTED: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        ["raw/crm_customers", "raw/crm_interactions", "raw/orders", "raw/order_items"],
        ("dagster/row_count", "unparsed_values_count"),
    ),
    "lake/purchases": ("dagster/row_count", "source_rows", "quarantined_rows", "quarantined_share"),
    "features/customer_features": ("dagster/row_count",),
    "features/online_store": ("dagster/row_count", "customers_written", "kept_fresher"),
    "ml/training_set": ("dagster/row_count", "positive_rate"),
    "ml/purchase_model": (
        "auc",
        "log_loss",
        "train_rows",
        "test_rows",
        "train_positive_rate",
        "test_positive_rate",
    ),
    "ml/champion_model": ("champion_auc", "champion_version"),
    "ml/purchase_scores": (
        "dagster/row_count",
        "model_version",
        "online_rows_written",
        "score_mean",
        *(f"score_p{q}" for q in ("10", "25", "50", "75", "90")),
    ),
}


def materializations(p: Platform, asset: str) -> list[dg.EventLogRecord]:
    """Every materialization of an asset, re-runs included, newest first."""
    found = p.instance.fetch_materializations(dg.AssetKey.from_user_string(asset), limit=10_000)
    assert not found.has_more
    return list(found.records)


def test_every_column_written_is_documented_and_every_documented_one_written(ten_days):
    """The real files of every lake table after the chain: the columns and types they hold
    (the same in every partition, empty ones included) and their Hive path columns are exactly
    the documented ones (columns.py, docs/lake.md); every materialization's column schema says
    so, with the descriptions."""
    p = ten_days
    for location, documented in TABLES.items():
        table = p.root / "lake" / location
        files = [table / f for listed in DeltaLakeTable(table).files().values() for f in listed]
        assert len(files) >= 10, location
        written = {tuple((f.name, str(f.type)) for f in pq.read_schema(f)) for f in files}
        assert len(written) == 1, (location, written)
        in_path = {part.split("=")[0] for f in files for part in f.relative_to(table).parts[:-1]}
        described = [(c.name, c.type) for c in documented.columns]
        assert list(written.pop()) == [c for c in described if c[0] not in PARTITION_COLUMNS]
        assert in_path == {name for name, _ in described if name in PARTITION_COLUMNS}
    for table, location in lake_tables(p.assets).items():
        if location not in TABLES:
            continue  # the models zone: JSON records
        asset, _, role = table.partition("#")
        for record in materializations(p, asset):
            shown = record.asset_materialization.metadata[column_schema_key(role or None)].value
            assert [(c.name, c.type, c.description) for c in shown.columns] == [
                (c.name, c.type, c.description) for c in TABLES[location].columns
            ], (table, record.partition_key)


def test_plotted_numbers_are_on_every_materialization_of_every_partition(ten_days):
    """For every asset, every partition of the chain and every re-run (a model partition whose
    MLflow run is reused, a champion day that moves no alias, days without a model or scores),
    the metadata users plot over partitions is there, as numbers."""
    p = ten_days
    # An older day, trained on its data as it is now (a late change may have reached it),
    # then again: the second run reuses its MLflow run and leaves the `champion` alias alone.
    older = str(LAST - DAY)
    p.materialize(["ml/purchase_model"], older)
    p.materialize(["ml/purchase_model", "ml/champion_model"], older)
    assert set(PLOTTED) == {k.to_user_string() for k in p.graph.keys}
    days = [str(START + k * DAY) for k in range(10)]
    for asset, keys in PLOTTED.items():
        records = materializations(p, asset)
        hourly = p.graph.partitions_def(dg.AssetKey.from_user_string(asset)) == (
            p.partitions.hourly
        )
        expected = [h for d in days for h in p.partitions.hours_of_day(d)] if hourly else days
        assert {r.partition_key for r in records} == set(expected), asset
        for record in records:
            metadata = record.asset_materialization.metadata
            for name in keys:
                value = metadata.get(name)
                assert isinstance(value, (dg.IntMetadataValue, dg.FloatMetadataValue)), (
                    asset,
                    record.partition_key,
                    name,
                    value,
                )
    for record in materializations(p, "lake/purchases"):
        metadata = {k: v.value for k, v in record.asset_materialization.metadata.items()}
        assert isinstance(metadata["quarantined_share"], float)
        assert metadata["quarantined_share"] == pytest.approx(
            metadata["quarantined_rows"] / metadata["source_rows"]
        )
    [rerun, *_] = materializations(p, "ml/purchase_model")
    assert rerun.partition_key == older
    assert rerun.asset_materialization.metadata["mlflow_run_reused"].value is True
    [champion, *_] = materializations(p, "ml/champion_model")
    assert "alias_moved" not in champion.asset_materialization.metadata
    untrained = model_metadata(p, START)
    assert untrained["trained"] is False and untrained["auc"] != untrained["auc"]  # NaN


def test_the_model_links_to_the_partitions_and_runs_that_made_it(ten_days):
    p = ten_days
    model = model_metadata(p, LAST)
    trained_on = sorted(model["trained_on"])
    for day in trained_on[:-1]:
        assert f"]({asset_url(TRAINING_SET_KEY, day)})" in model["training_partitions"], day
    assert asset_url(TRAINING_SET_KEY, str(LAST)) not in model["training_partitions"]
    assert model["evaluation_partition"] == asset_url(TRAINING_SET_KEY, str(LAST))
    registry = p.model_registry
    assert model["registered_version"] == registry.version_url(model["model_version"])
    assert model["mlflow_run"] == registry.run_url(p.model_record(str(LAST)).mlflow_run_id)

    def newest(key: dg.AssetKey) -> dict:
        records = p.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[str(LAST)]), limit=1
        ).records
        return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}

    record = p.champion(str(LAST)).champion
    champion = newest(CHAMPION_MODEL_KEY)
    assert champion["candidate"] == asset_url(PURCHASE_MODEL_KEY, str(LAST))
    assert champion["champion_trained_in"] == asset_url(PURCHASE_MODEL_KEY, record.model_partition)
    assert champion["registered_version"] == registry.version_url(record.model_version)
    scores = newest(PURCHASE_SCORES_KEY)
    assert scores["champion"] == asset_url(CHAMPION_MODEL_KEY, str(LAST))
    assert scores["features"] == asset_url(CUSTOMER_FEATURES_KEY, str(LAST))
    assert scores["registered_version"] == registry.version_url(record.model_version)
