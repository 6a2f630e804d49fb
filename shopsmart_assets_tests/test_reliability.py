"""Reliability: a source outage recovered without a manual step, and late source changes
re-run exactly the days they touch. Real SQLite sources, real Spark, Dagster in-process."""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import sqlalchemy as sa

from shopsmart_assets.definitions import build_definitions
from shopsmart_assets.defs.automation.recovery import (
    RECOVERY_TAG,
    WatchedAssets,
    late_data_request,
    outage_recovery,
)
from shopsmart_assets.demo.generator import DemoConfig, generate
from shopsmart_assets.demo.slack_stand_in import SlackServer
from shopsmart_assets.resources import SlackAlerts, SourceDatabase
from shopsmart_assets_tests import reconcile
from shopsmart_assets_tests.harness import (
    DAILY,
    HOURLY,
    START,
    Platform,
    repository_of,
    requested_partitions,
    run_failure_context,
)

pytestmark = [pytest.mark.spark]

UTC = ZoneInfo("UTC")
DAY1, DAY2, DAY3 = (START + timedelta(days=k) for k in range(3))
TOKEN = "xoxb-reliability-test-5550001"


def chain(p: Platform) -> WatchedAssets:
    return WatchedAssets(p.graph, p.partitions)


def evaluate_recovery(p: Platform, now: datetime, crm: SourceDatabase):
    """What `recovery_sensor` decides at `now`."""
    sources = {"crm_db": crm, "orders_db": SourceDatabase(name="orders", url=p.orders_url)}
    return outage_recovery(p.instance, now, sources, chain(p))


def tick_recovery_sensor(p: Platform) -> dg.SensorResult:
    """One tick of the deployed sensor, as the daemon runs it (now, with its resources)."""
    sources = {
        "crm_db": SourceDatabase(name="crm", url=p.crm_url),
        "orders_db": SourceDatabase(name="orders", url=p.orders_url),
        "lake": p.lake,
    }
    defs = build_definitions(p.partitions)
    sensor = repository_of(defs).get_sensor_def("recovery_sensor")
    with dg.build_sensor_context(instance=p.instance, definitions=defs, resources=sources) as ctx:
        return sensor.evaluate_tick(ctx)


def requested(request: dg.RunRequest) -> dict[str, list[str]]:
    """The backfill's partitions by asset, as plain strings."""
    assert request.asset_graph_subset is not None, "expected a backfill request"
    return {k.to_user_string(): v for k, v in requested_partitions(request).items()}


def crm_runs_failing(p: Platform, crm: SourceDatabase, days) -> list[str]:
    run_ids = []
    for day in days:
        result = p.materialize(DAILY, str(day), raise_on_error=False, crm_db=crm)
        assert not result.success
        run_ids.append(result.run_id)
    return run_ids


def test_crm_outage_of_two_days_is_alerted_then_recovered_by_one_backfill(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
):
    # the backoff is really waited out in test_retries.py; here a tenth of it will do
    monkeypatch.setenv("SHOPSMART_SOURCE_RETRY_DELAY", "0.2")
    platform.generate(START, days=3, orders_per_day=60)
    platform.materialize(HOURLY, *platform.hours(DAY1, DAY3))
    platform.materialize(DAILY, str(DAY1))

    # The CRM's database file is gone for the nightly runs of day 2 and day 3.
    real, offline = platform.root / "crm.db", platform.root / "crm.offline"
    os.rename(real, offline)
    crm = SourceDatabase(name="crm", url=f"sqlite:///file:{real}?mode=ro&uri=true")
    failed = crm_runs_failing(platform, crm, [DAY2, DAY3])
    for run_id in failed:  # each run gave up only after its 3 retries
        retries = platform.instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)
        assert len(retries) == 3 * 2  # both CRM extracts, 3 each

    # Each failed run is alerted once.
    with SlackServer(TOKEN) as slack:
        alerts = SlackAlerts(token=TOKEN, channel="#data-alerts", api_url=slack.url)
        from shopsmart_assets.defs.automation.alerts import build_alert_sensors

        on_failure = build_alert_sensors(alerts)[0]
        for run_id in failed:
            on_failure(run_failure_context(platform.instance, run_id), slack_alerts=alerts)
        texts = [m["text"] for m in slack.messages]
    assert len(texts) == 2
    assert [f"Partitions: {DAY2}" in texts[0], f"Partitions: {DAY3}" in texts[1]] == [True, True]
    assert all("Assets: raw/crm_customers, raw/crm_interactions" in t for t in texts), texts

    # While the CRM is down the sensor waits, and says why.
    now = datetime(DAY3.year, DAY3.month, DAY3.day, tzinfo=UTC) + timedelta(days=1, hours=1)
    waiting = evaluate_recovery(platform, now, crm)
    assert isinstance(waiting, dg.SkipReason)
    assert "waiting for the source to recover" in waiting.skip_message
    assert "crm: database file" in waiting.skip_message

    # The CRM is back: exactly the failed partitions, in one backfill.
    os.rename(offline, real)
    request = evaluate_recovery(platform, now, crm)
    assert isinstance(request, dg.RunRequest)
    assert request.tags[RECOVERY_TAG] == "outage"
    partitions = requested(request)
    assert partitions == {key: [str(DAY2), str(DAY3)] for key in DAILY}

    platform.run_backfill(partitions)
    for day in (DAY1, DAY2, DAY3):
        reconcile.assert_lake_reconciles(
            platform.root / "lake", platform.root / "crm.db", platform.root / "orders.db", day
        )
    after = evaluate_recovery(platform, now, crm)
    assert isinstance(after, dg.SkipReason) and "complete" in after.skip_message

    # The deployed sensor, ticking today, asks for the recent days that were never run: a
    # backfill the daemon accepts (targets within the sensor's selection).
    [today] = tick_recovery_sensor(platform).run_requests
    assert set(requested(today)) == {*DAILY, *HOURLY}


def source_changed_days(orders_db: str, since: datetime, before: datetime) -> list[str]:
    """Days (of orders placed before `before`) with a row updated at or after `since`:
    computed with SQL over the source, independently of the sensor's code."""
    with sqlite3.connect(orders_db) as connection:
        rows = connection.execute(
            "SELECT DISTINCT substr(ordered_at, 1, 10) FROM orders"
            " WHERE ordered_at < ? AND updated_at >= ? ORDER BY 1",
            (before.strftime("%Y-%m-%d %H:%M:%S"), since.strftime("%Y-%m-%d %H:%M:%S")),
        ).fetchall()
    return [day for (day,) in rows]


def materializations(p: Platform, key: str, day: str) -> int:
    return len(
        p.instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey.from_user_string(key), asset_partitions=[day]
            ),
            limit=100,
        ).records
    )


def test_late_order_changes_rebuild_exactly_what_they_reach(platform: Platform):
    platform.generate(START, days=3, orders_per_day=150)
    platform.materialize_days(DAY1, DAY3)
    orders = SourceDatabase(name="orders", url=platform.orders_url)
    now = datetime(DAY3.year, DAY3.month, DAY3.day, tzinfo=UTC) + timedelta(days=2)

    nothing, cursor = late_data_request(
        platform.instance, now, orders, platform.lake, None, chain(platform)
    )
    assert isinstance(nothing, dg.SkipReason)

    # A day of new activity arrives, and with it a refund of an order of day 1 and a
    # cancellation of one of day 3, changed in place as the orders system does.
    horizon = datetime(DAY3.year, DAY3.month, DAY3.day) + timedelta(days=1)
    generate(
        sa.create_engine(platform.crm_url),
        sa.create_engine(platform.orders_url),
        horizon.replace(tzinfo=UTC),
        24,
        DemoConfig(seed=11, orders_per_day=150),
    )
    with sqlite3.connect(platform.root / "orders.db") as connection:
        for day, status in ((DAY1, "refunded"), (DAY3, "cancelled")):
            connection.execute(
                "UPDATE orders SET status = ?, updated_at = ? WHERE order_id = ("
                "SELECT min(order_id) FROM orders"
                " WHERE status = 'placed' AND substr(ordered_at, 1, 10) = ?)",
                (status, f"{horizon + timedelta(hours=5):%Y-%m-%d %H:%M:%S}", str(day)),
            )
    expected = source_changed_days(str(platform.root / "orders.db"), horizon, horizon)
    assert {str(DAY1), str(DAY3)} <= set(expected)

    request, cursor = late_data_request(
        platform.instance, now, orders, platform.lake, cursor, chain(platform)
    )
    assert isinstance(request, dg.RunRequest) and request.tags[RECOVERY_TAG] == "late-data"
    partitions = requested(request)
    built = [str(d) for d in (DAY1, DAY2, DAY3)]  # day 4 is in the source, not yet loaded
    first_changed = expected[0]
    assert partitions == {
        **{
            key: sorted(h for d in expected for h in platform.partitions.hours_of_day(d))
            for key in HOURLY
        },
        "lake/purchases": expected,
        # every built day whose 90-day window holds a changed day
        "features/customer_features": [d for d in built if d >= first_changed],
        # every built training set whose label window (or feature day) holds one
        "ml/training_set": [d for d in built if d >= first_changed],
        # the scores of every built day whose features change
        "ml/purchase_scores": [d for d in built if d >= first_changed],
        # what serves: only the newest built partition
        "features/online_store": [built[-1]],
        "ml/purchase_model": [built[-1]],
        "ml/champion_model": [built[-1]],
    }
    assert not any(key.startswith("raw/crm") for key in partitions)
    # the same change does not launch a second backfill
    again, cursor = late_data_request(
        platform.instance, now, orders, platform.lake, cursor, chain(platform)
    )
    assert isinstance(again, dg.SkipReason)

    platform.run_backfill(partitions)
    for day in (DAY1, DAY2, DAY3):
        reconcile.assert_lake_reconciles(
            platform.root / "lake", platform.root / "crm.db", platform.root / "orders.db", day
        )
        runs = materializations(platform, "lake/purchases", str(day))
        assert runs == (2 if str(day) in expected else 1), (day, runs)
    done, _ = late_data_request(
        platform.instance, now, orders, platform.lake, None, chain(platform)
    )
    assert isinstance(done, dg.SkipReason)


def test_healing_reaches_back_for_what_it_needs_and_late_data_asks_only_what_was_built(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
):
    """History loaded through lake/purchases and the features only, before the ML end, then
    the automation on: the nightly chain fails (its model reads training sets never built,
    older than the recovery horizon). A late refund rebuilds only what had been built, and
    succeeds; the recovery backfill takes the old training sets with the days it recovers, and
    succeeds; afterwards the recovery sensor finds nothing left to do."""
    monkeypatch.setenv("SHOPSMART_RECOVERY_DAYS", "2")  # days 4 and 5 of 5
    days = [START + timedelta(days=k) for k in range(5)]
    p = platform
    p.generate(START, days=5, orders_per_day=80)
    p.materialize(HOURLY, *p.hours(days[0], days[-1]))
    history = ["raw/crm_customers", "raw/crm_interactions", "lake/purchases"]
    p.materialize([*history, "features/customer_features"], str(days[0]), str(days[-1]))

    # the nightly chain of day 5 fails, and says what heals it
    nightly = p.materialize(DAILY, str(days[-1]), raise_on_error=False)
    assert not nightly.success
    [failure] = [e for e in nightly.all_events if e.event_type_value == "STEP_FAILURE"]
    said = failure.event_specific_data.user_failure_data.description
    assert f"ml/purchase_model {days[-1]} needs ml/training_set partition {days[0]}" in said
    assert f"`shopsmart-backfill --from {days[0]} --to {days[-1]}`" in said

    # a late refund of an order of day 4
    now = datetime(days[-1].year, days[-1].month, days[-1].day, tzinfo=UTC) + timedelta(days=1)
    with sqlite3.connect(p.root / "orders.db") as connection:
        changed = connection.execute(
            "UPDATE orders SET status = 'refunded', updated_at = ? WHERE order_id = ("
            "SELECT min(order_id) FROM orders WHERE status = 'placed' AND ordered_at >= ? AND "
            "ordered_at < ?)",
            (f"{now:%Y-%m-%d %H:%M:%S}", f"{days[3]} 00:00:00", f"{days[4]} 00:00:00"),
        ).rowcount
    assert changed == 1
    orders = SourceDatabase(name="orders", url=p.orders_url)
    late, _ = late_data_request(p.instance, now, orders, p.lake, None, chain(p))
    rebuilt = requested(late)
    for key, keys in rebuilt.items():  # besides the day's hours, only what had been built
        if key not in HOURLY:
            built = p.instance.get_materialized_partitions(dg.AssetKey.from_user_string(key))
            assert set(keys) <= built, (key, keys, built)
    assert "ml/purchase_scores" not in rebuilt and "ml/purchase_model" not in rebuilt
    assert rebuilt["lake/purchases"] == [str(days[3])]
    p.run_backfill(rebuilt)

    # the recovery of days 4 and 5 builds the training sets of days 1-3 with them
    recovery = evaluate_recovery(p, now, SourceDatabase(name="crm", url=p.crm_url))
    assert isinstance(recovery, dg.RunRequest)
    recovered = requested(recovery)
    assert recovered["ml/training_set"] == [str(d) for d in days[:4]]  # day 5's was built
    assert recovered["ml/purchase_model"] == [str(d) for d in days[3:]]
    p.run_backfill(recovered)
    for key in DAILY:
        built = p.instance.get_materialized_partitions(dg.AssetKey.from_user_string(key))
        assert {str(d) for d in days[3:]} <= built, key
    done = evaluate_recovery(p, now, SourceDatabase(name="crm", url=p.crm_url))
    assert isinstance(done, dg.SkipReason) and "complete" in done.skip_message
    for day in days:
        reconcile.assert_lake_reconciles(
            p.root / "lake", p.root / "crm.db", p.root / "orders.db", day
        )
