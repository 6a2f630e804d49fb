"""Schedules and sensors evaluated at given instants: exactly which partitions they request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from dagster._utils.schedules import cron_string_iterator

from shopsmart_assets.assets.raw import ORDER_ITEMS_KEY, ORDERS_KEY
from shopsmart_assets.automation import (
    daily_chain_request,
    daily_chain_sensor,
    freshness_schedule,
    hourly_orders_schedule,
    midnight_catchup_schedule,
)
from shopsmart_assets.checks import FRESH_BY_DEADLINE, freshness_result
from shopsmart_assets.definitions import defs

UTC = ZoneInfo("UTC")
TUESDAY = datetime(2026, 3, 3, tzinfo=UTC)  # a Tuesday


def materialize_hours(
    instance: dg.DagsterInstance, day: str, hours, keys=(ORDERS_KEY, ORDER_ITEMS_KEY)
) -> None:
    for hour in hours:
        for key in keys:
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key=key, partition=f"{day}-{hour:02d}:00")
            )


def tick(schedule: dg.ScheduleDefinition, at: datetime, instance=None) -> list[dg.RunRequest]:
    """The run requests of one evaluation of `schedule` at `at`. The context is closed on the
    way out: an unclosed one leaves its instance registered for Dagster's later loads."""
    with dg.build_schedule_context(
        instance=instance, scheduled_execution_time=at, repository_def=defs.get_repository_def()
    ) as context:
        return list(schedule.evaluate_tick(context).run_requests or [])


def test_hourly_extraction_fires_at_the_end_of_each_trading_hour():
    week = cron_string_iterator(
        TUESDAY.timestamp() - 2 * 86400, hourly_orders_schedule.cron_schedule, "UTC"
    )
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
    [request] = tick(hourly_orders_schedule, at)
    assert request.partition_key == partition
    assert request.run_key == partition


def test_midnight_catches_up_exactly_the_missing_hours():
    with dg.instance_for_test() as instance:
        materialize_hours(instance, "2026-03-03", range(9, 18))  # trading hours came in
        materialize_hours(instance, "2026-03-03", [20], keys=(ORDERS_KEY,))  # half an hour
        [request] = tick(midnight_catchup_schedule, TUESDAY + timedelta(days=1), instance)
        assert request.tags[ASSET_PARTITION_RANGE_START_TAG] == "2026-03-03-00:00"
        assert request.tags[ASSET_PARTITION_RANGE_END_TAG] == "2026-03-03-23:00"
        assert request.run_key == "catchup-2026-03-03"

        materialize_hours(instance, "2026-03-03", range(0, 9))
        [request] = tick(midnight_catchup_schedule, TUESDAY + timedelta(days=1), instance)
        # 18:00..23:00 are missing (20:00 lacks its items): one run for that range
        assert request.tags[ASSET_PARTITION_RANGE_START_TAG] == "2026-03-03-18:00"
        assert request.tags[ASSET_PARTITION_RANGE_END_TAG] == "2026-03-03-23:00"

        materialize_hours(instance, "2026-03-03", range(18, 24))
        requests = tick(midnight_catchup_schedule, TUESDAY + timedelta(days=1), instance)
        assert requests == []


def test_daily_chain_waits_for_all_24_hours_then_requests_yesterday():
    just_after_midnight = TUESDAY + timedelta(days=1, seconds=40)
    with dg.instance_for_test() as instance:
        materialize_hours(instance, "2026-03-03", range(0, 23))
        waiting = daily_chain_request(instance, just_after_midnight)
        assert isinstance(waiting, dg.SkipReason)
        assert "1 hourly order partitions of 2026-03-03: 23:00" in waiting.skip_message

        materialize_hours(instance, "2026-03-03", [23])
        request = daily_chain_request(instance, just_after_midnight)
        assert isinstance(request, dg.RunRequest)
        assert request.partition_key == "2026-03-03"
        assert request.run_key == "daily-chain-2026-03-03"
        # later the same day it is still yesterday that is asked for, never today
        assert (
            daily_chain_request(instance, TUESDAY + timedelta(days=1, hours=23)).partition_key
            == "2026-03-03"
        )


def test_daily_chain_sensor_runs_against_the_instance():
    with dg.instance_for_test() as instance:
        with dg.build_sensor_context(instance=instance, definitions=defs) as context:
            result = daily_chain_sensor.evaluate_tick(context)
        assert result.skip_message and "waiting for 24 hourly order partitions" in (
            result.skip_message
        )


def test_freshness_checks_fail_when_yesterday_is_not_in():
    at_deadline = TUESDAY + timedelta(days=1, hours=6)
    with dg.instance_for_test() as instance:
        for key in FRESH_BY_DEADLINE:
            result = freshness_result(instance, key, at_deadline)
            assert not result.passed
            assert result.severity == dg.AssetCheckSeverity.ERROR
            assert "2026-03-03 is not in by 06:00" in result.description
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=FRESH_BY_DEADLINE[0], partition="2026-03-03")
        )
        assert freshness_result(instance, FRESH_BY_DEADLINE[0], at_deadline).passed
        assert not freshness_result(instance, FRESH_BY_DEADLINE[1], at_deadline).passed
    assert freshness_schedule.cron_schedule == "0 6 * * *"


def test_timezone_and_trading_hours_come_from_the_environment():
    code = (
        "import json; from shopsmart_assets import definitions as d, automation as a;"
        "from shopsmart_assets.partitions import daily_partitions as p;"
        "print(json.dumps([a.hourly_orders_schedule.cron_schedule,"
        " a.hourly_orders_schedule.execution_timezone, a.midnight_catchup_schedule"
        ".execution_timezone, p.timezone, a.freshness_schedule.cron_schedule]))"
    )
    env = {
        **os.environ,
        "SHOPSMART_TIMEZONE": "Europe/Berlin",
        "SHOPSMART_BUSINESS_HOURS": "08-20",
        "SHOPSMART_BUSINESS_DAYS": "1-6",
        "SHOPSMART_FRESHNESS_DEADLINE": "07:30",
    }
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        "0 9-20 * * 1-6",
        "Europe/Berlin",
        "Europe/Berlin",
        "Europe/Berlin",
        "30 7 * * *",
    ]


@pytest.mark.parametrize(("value", "status"), [("", "STOPPED"), ("on", "RUNNING")])
def test_automation_switch_starts_schedules_and_the_daily_sensor(value, status):
    code = (
        "import json; from shopsmart_assets.definitions import defs;"
        "r = defs.get_repository_def();"
        "print(json.dumps(sorted({s.name: s.default_status.value for s in r.schedule_defs}"
        ".items()) + [r.get_sensor_def('daily_chain_sensor').default_status.value]))"
    )
    env = {**os.environ, "SHOPSMART_AUTOMATION": value}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        ["freshness_schedule", status],
        ["hourly_orders_schedule", status],
        ["midnight_catchup_schedule", status],
        status,
    ]
