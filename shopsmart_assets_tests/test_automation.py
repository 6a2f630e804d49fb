"""Schedules and sensors evaluated at given instants: exactly which partitions they request, in
UTC and across DST nights in New York."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from dagster._utils.schedules import cron_string_iterator

from shopsmart_assets.definitions import build_assets, build_definitions
from shopsmart_assets.defs.asset_graph import DeclaredAssetGraph
from shopsmart_assets.defs.automation.daily_chain import daily_chain_request
from shopsmart_assets.defs.automation.freshness import FRESHNESS_SENSOR
from shopsmart_assets.defs.automation.jobs import PARTITION_RANGE_END, PARTITION_RANGE_START
from shopsmart_assets.defs.raw.assets import ORDER_ITEMS_KEY, ORDERS_KEY
from shopsmart_assets.partitions import build_partitions
from shopsmart_assets_tests.harness import repository_of

UTC = ZoneInfo("UTC")
NEW_YORK = ZoneInfo("America/New_York")
TUESDAY = datetime(2026, 3, 3, tzinfo=UTC)  # a Tuesday
HOURLY_KEYS = [ORDERS_KEY, ORDER_ITEMS_KEY]
UTC_PARTITIONS = build_partitions("2026-01-01", "UTC")
DAILY_KEYS = DeclaredAssetGraph.of(build_assets(UTC_PARTITIONS)).partitioned_by(
    UTC_PARTITIONS.daily
)
NY_PARTITIONS = build_partitions("2026-01-01", "America/New_York")
defs = build_definitions(UTC_PARTITIONS)


def materialize_hours(instance: dg.DagsterInstance, keys, hour_keys) -> None:
    for hour in hour_keys:
        for key in keys:
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key=key, partition=hour)
            )


def tick(definitions: dg.Definitions, name: str, at: datetime, instance=None) -> list:
    """The run requests of one evaluation of a schedule at `at`. The context is closed on the
    way out: an unclosed one leaves its instance registered for Dagster's later loads."""
    repository = repository_of(definitions)
    schedule = repository.get_schedule_def(name)
    with dg.build_schedule_context(
        instance=instance, scheduled_execution_time=at, repository_def=repository
    ) as context:
        return list(schedule.evaluate_tick(context).run_requests or [])


def test_hourly_extraction_fires_at_the_end_of_each_trading_hour():
    cron = repository_of(defs).get_schedule_def("hourly_orders_schedule").cron_schedule
    week = cron_string_iterator(TUESDAY.timestamp() - 2 * 86400, cron, "UTC")
    fired = [next(week) for _ in range(46)]
    # Sunday 2026-03-01 .. : Monday 10:00 is the first tick, Friday 18:00 the 45th
    assert fired[0] == datetime(2026, 3, 2, 10, tzinfo=UTC)
    assert fired[44] == datetime(2026, 3, 6, 18, tzinfo=UTC)
    assert fired[45] == datetime(2026, 3, 9, 10, tzinfo=UTC)  # nothing on the weekend
    assert {t.hour for t in fired} == set(range(10, 19))


@pytest.mark.parametrize(
    ("at", "partition"),
    [
        (TUESDAY.replace(hour=10), "2026-03-03-09:00"),
        (TUESDAY.replace(hour=18), "2026-03-03-17:00"),
        (TUESDAY.replace(hour=13, minute=0, second=30), "2026-03-03-12:00"),
    ],
)
def test_hourly_extraction_requests_the_hour_that_just_ended(at, partition):
    [request] = tick(defs, "hourly_orders_schedule", at)
    assert request.partition_key == partition
    assert request.run_key == partition


def test_on_dst_nights_each_hour_that_ends_is_requested_once(monkeypatch):
    """Trading around the clock in New York: the fall-back night has two 01:00 hours, each
    requested when it ends; the spring-forward night has no 02:00 hour to request."""
    monkeypatch.setenv("SHOPSMART_BUSINESS_HOURS", "00-24")
    monkeypatch.setenv("SHOPSMART_BUSINESS_DAYS", "0-6")
    ny = build_definitions(NY_PARTITIONS)
    fall_back = datetime(2026, 11, 1, 4, tzinfo=UTC)  # 00:00 EDT
    requested = [
        tick(ny, "hourly_orders_schedule", fall_back + timedelta(hours=h))[0].partition_key
        for h in range(1, 5)
    ]
    assert requested == [
        "2026-11-01-00:00",
        "2026-11-01-01:00",
        "2026-11-01-01:00-0500",
        "2026-11-01-02:00",
    ]
    spring = datetime(2026, 3, 8, 5, tzinfo=UTC)  # 00:00 EST
    requested = [
        tick(ny, "hourly_orders_schedule", spring + timedelta(hours=h))[0].partition_key
        for h in range(1, 4)
    ]
    assert requested == ["2026-03-08-00:00", "2026-03-08-01:00", "2026-03-08-03:00"]


def test_midnight_catches_up_exactly_the_missing_hours():
    with dg.instance_for_test() as instance:
        hours = UTC_PARTITIONS.hours_of_day("2026-03-03")
        materialize_hours(instance, HOURLY_KEYS, hours[9:18])  # trading hours came in
        materialize_hours(instance, [ORDERS_KEY], [hours[20]])  # half an hour
        midnight = TUESDAY + timedelta(days=1)
        [request] = tick(defs, "midnight_catchup_schedule", midnight, instance)
        assert request.tags[PARTITION_RANGE_START] == "2026-03-03-00:00"
        assert request.tags[PARTITION_RANGE_END] == "2026-03-03-23:00"
        assert request.run_key == "catchup-2026-03-03"

        materialize_hours(instance, HOURLY_KEYS, hours[:9])
        [request] = tick(defs, "midnight_catchup_schedule", midnight, instance)
        # 18:00..23:00 are missing (20:00 lacks its items): one run for that range
        assert request.tags[PARTITION_RANGE_START] == "2026-03-03-18:00"
        assert request.tags[PARTITION_RANGE_END] == "2026-03-03-23:00"

        materialize_hours(instance, HOURLY_KEYS, hours[18:])
        assert tick(defs, "midnight_catchup_schedule", midnight, instance) == []


def test_daily_chain_waits_for_all_24_hours_then_requests_yesterday():
    just_after_midnight = TUESDAY + timedelta(days=1, seconds=40)
    hours = UTC_PARTITIONS.hours_of_day("2026-03-03")
    with dg.instance_for_test() as instance:
        materialize_hours(instance, HOURLY_KEYS, hours[:23])
        waiting = daily_chain_request(instance, UTC_PARTITIONS, HOURLY_KEYS, just_after_midnight)
        assert isinstance(waiting, dg.SkipReason)
        assert "1 hourly order partitions of 2026-03-03: 23:00" in waiting.skip_message

        materialize_hours(instance, HOURLY_KEYS, hours[23:])
        request = daily_chain_request(instance, UTC_PARTITIONS, HOURLY_KEYS, just_after_midnight)
        assert isinstance(request, dg.RunRequest)
        assert request.partition_key == "2026-03-03"
        assert request.run_key == "daily-chain-2026-03-03"
        # later the same day it is still yesterday that is asked for, never today
        late = TUESDAY + timedelta(days=1, hours=23)
        later = daily_chain_request(instance, UTC_PARTITIONS, HOURLY_KEYS, late)
        assert later.partition_key == "2026-03-03"

        # a day whose chain is already in (a backfill, `make demo`) is not run again; one
        # daily asset missing is enough to run it
        daily = [key for key in DAILY_KEYS if key != dg.AssetKey(["ml", "purchase_scores"])]
        materialize_hours(instance, daily, ["2026-03-03"])
        run = daily_chain_request(instance, UTC_PARTITIONS, HOURLY_KEYS, late, DAILY_KEYS)
        assert isinstance(run, dg.RunRequest)
        materialize_hours(instance, [dg.AssetKey(["ml", "purchase_scores"])], ["2026-03-03"])
        done = daily_chain_request(instance, UTC_PARTITIONS, HOURLY_KEYS, late, DAILY_KEYS)
        assert isinstance(done, dg.SkipReason)
        assert "2026-03-03 is already materialized" in done.skip_message


@pytest.mark.parametrize(("day", "hours"), [("2026-11-01", 25), ("2026-03-08", 23)])
def test_daily_chain_waits_for_every_hour_of_a_dst_day(day, hours):
    """A fall-back day is complete with 25 hours, a spring-forward day with 23."""
    keys = NY_PARTITIONS.hours_of_day(day)
    assert len(keys) == hours
    after = NY_PARTITIONS.daily.time_window_for_partition_key(day).end + timedelta(minutes=1)
    with dg.instance_for_test() as instance:
        materialize_hours(instance, HOURLY_KEYS, keys[:-1])
        waiting = daily_chain_request(instance, NY_PARTITIONS, HOURLY_KEYS, after)
        assert f"1 hourly order partitions of {day}" in waiting.skip_message
        materialize_hours(instance, HOURLY_KEYS, keys[-1:])
        assert daily_chain_request(instance, NY_PARTITIONS, HOURLY_KEYS, after).partition_key == day


def test_daily_chain_sensor_runs_against_the_instance():
    with dg.instance_for_test() as instance:
        sensor = repository_of(defs).get_sensor_def("daily_chain_sensor")
        with dg.build_sensor_context(instance=instance, definitions=defs) as context:
            result = sensor.evaluate_tick(context)
        assert result.skip_message and "waiting for 24 hourly order partitions" in (
            result.skip_message
        )


def test_timezone_trading_hours_and_deadline_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("SHOPSMART_TIMEZONE", "Europe/Berlin")
    monkeypatch.setenv("SHOPSMART_BUSINESS_HOURS", "08-20")
    monkeypatch.setenv("SHOPSMART_BUSINESS_DAYS", "1-6")
    monkeypatch.setenv("SHOPSMART_FRESHNESS_DEADLINE", "07:30")
    repository = repository_of(build_definitions())
    hourly = repository.get_schedule_def("hourly_orders_schedule")
    assert hourly.cron_schedule == "0 9-20 * * 1-6"
    assert hourly.execution_timezone == "Europe/Berlin"
    assert repository.get_schedule_def("midnight_catchup_schedule").execution_timezone == (
        "Europe/Berlin"
    )
    purchases = repository.assets_defs_by_key[dg.AssetKey(["lake", "purchases"])]
    assert purchases.partitions_def.timezone == "Europe/Berlin"
    [freshness] = [
        c for c in repository.asset_checks_defs_by_key.values() if "freshness" in str(c.check_keys)
    ][:1]
    params = next(iter(freshness.check_specs)).metadata["dagster/freshness_params"].value
    assert params["deadline_cron"] == "30 7 * * *" and params["timezone"] == "Europe/Berlin"


@pytest.mark.parametrize(("value", "status"), [("", "STOPPED"), ("on", "RUNNING")])
def test_automation_switch_starts_schedules_and_sensors(monkeypatch, value, status):
    monkeypatch.setenv("SHOPSMART_AUTOMATION", value)
    repository = repository_of(build_definitions())
    statuses = {s.name: s.default_status.value for s in repository.schedule_defs}
    statuses.update(
        {
            name: repository.get_sensor_def(name).default_status.value
            for name in (
                "daily_chain_sensor",
                "recovery_sensor",
                "late_orders_sensor",
                FRESHNESS_SENSOR,
            )
        }
    )
    assert statuses == {
        "hourly_orders_schedule": status,
        "midnight_catchup_schedule": status,
        "lake_gc_schedule": status,
        "daily_chain_sensor": status,
        "recovery_sensor": status,
        "late_orders_sensor": status,
        FRESHNESS_SENSOR: status,
    }
