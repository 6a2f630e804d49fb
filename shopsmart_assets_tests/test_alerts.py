"""Slack alerts for failed runs, against a local Slack-compatible HTTP server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from shopsmart_assets.definitions import build_definitions
from shopsmart_assets.defs.automation.alerts import (
    SENSOR_NAME_TAG,
    WILL_RETRY_TAG,
    build_alert_sensors,
    mask_credentials,
)
from shopsmart_assets.defs.automation.freshness import FRESHNESS_SENSOR
from shopsmart_assets.demo.slack_stand_in import SlackServer
from shopsmart_assets.resources import SlackAlerts
from shopsmart_assets_tests.harness import (
    START,
    UTC_PARTITIONS,
    Platform,
    files_containing,
    platform_at,
    repository_of,
    run_failure_context,
)

TOKEN = "xoxb-shopsmart-test-0123456789"


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    """On a SQLite instance (conftest's is in memory): a test below looks for the token in the
    files where the instance keeps its runs, events and logs."""
    with dg.instance_for_test() as instance:
        yield platform_at(tmp_path, instance)


def failure_context(p: Platform, run_id: str) -> dg.RunFailureSensorContext:
    return run_failure_context(p.instance, run_id)


@pytest.fixture
def failed_run(platform: Platform) -> str:
    """lake/purchases for a day whose raw orders were never extracted: a real failure."""
    platform.generate(START, days=1, orders_per_day=20)
    day = START + timedelta(days=1)
    result = platform.materialize(["lake/purchases"], str(day), raise_on_error=False)
    assert not result.success
    return result.run_id


def test_a_failed_run_posts_exactly_one_message_with_what_failed(platform, failed_run, monkeypatch):
    monkeypatch.setenv("SHOPSMART_UI_URL", "http://dagster.shopsmart.test:3000")
    with SlackServer(TOKEN) as slack:
        alerts = SlackAlerts(token=TOKEN, channel="#data-alerts", api_url=slack.url)
        run_failure_sensor = build_alert_sensors(alerts)[0]
        run_failure_sensor(failure_context(platform, failed_run), slack_alerts=alerts)
        assert slack.rejected == []
        [message] = slack.messages
    text = message["text"]
    assert message["channel"] == "#data-alerts"
    assert "job __ephemeral_asset_job__" in text
    assert "Assets: lake/purchases" in text
    assert "Partitions: 2026-01-02" in text
    error_line = next(line for line in text.splitlines() if line.startswith("Error: "))
    assert "MissingPartitionError" in error_line
    assert "needs raw/orders partition 2026-01-02-00:00" in error_line
    assert f"Run: http://dagster.shopsmart.test:3000/runs/{failed_run}" in text
    assert TOKEN not in text
    # the token is nowhere in the instance's storage (event log, run storage, logs)
    assert files_containing(Path(platform.instance.root_directory), TOKEN) == []


def test_an_alert_built_before_dagster_tags_the_retry_still_says_it_is_retried(tmp_path):
    """Dagster tags a failed run `dagster/will_retry` just after it stores the failure: a sensor
    tick in between sees the run without the tag. The alert reads the run again and waits for
    Dagster's decision instead of leaving out that the run is retried."""
    retries = {"run_retries": {"enabled": True, "max_retries": 1}}
    with dg.instance_for_test(overrides=retries) as instance:
        p = platform_at(tmp_path, instance)
        p.generate(START, days=1, orders_per_day=20)
        day = START + timedelta(days=1)
        result = p.materialize(["lake/purchases"], str(day), raise_on_error=False)
        run = instance.get_run_by_id(result.run_id)
        assert run.tags[WILL_RETRY_TAG] == "true"  # the instance's decision, once it is made
        # the run as a sensor tick can read it between the failure and the tag
        untagged = dg.DagsterRun(
            job_name=run.job_name,
            run_id=run.run_id,
            tags={k: v for k, v in run.tags.items() if k != WILL_RETRY_TAG},
            status=run.status,
        )
        [failure] = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        context = dg.build_run_status_sensor_context(
            sensor_name="slack_on_run_failure",
            dagster_instance=instance,
            dagster_run=untagged,
            dagster_event=failure.dagster_event,
        ).for_run_failure()
        with SlackServer(TOKEN) as slack:
            alerts = SlackAlerts(token=TOKEN, api_url=slack.url)
            build_alert_sensors(alerts)[0](context, slack_alerts=alerts)
            [message] = slack.messages
    assert "(Dagster retries the run automatically)" in message["text"]


def test_without_a_token_the_sensors_are_off_and_say_why(platform, failed_run):
    sensors = build_alert_sensors(SlackAlerts(token=None))
    for sensor in sensors:
        assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
        assert "Off: SLACK_BOT_TOKEN is not set" in sensor.description
    with SlackServer(TOKEN) as slack:
        sensors[0](
            failure_context(platform, failed_run),
            slack_alerts=SlackAlerts(token=None, api_url=slack.url),
        )
        assert slack.messages == [] and slack.rejected == []


def test_with_a_token_the_sensors_start_running():
    for sensor in build_alert_sensors(SlackAlerts(token=TOKEN)):
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        (
            "could not connect to postgresql://etl:s3cr3t@db:5432/crm",
            "could not connect to postgresql://etl:***@db:5432/crm",
        ),
        ("no url here", "no url here"),
        ("sqlite:////data/crm.db failed", "sqlite:////data/crm.db failed"),
    ],
)
def test_credentials_in_errors_are_masked(raw, masked):
    assert mask_credentials(raw) == masked


def test_freshness_failures_page_once_at_the_deadline_only(platform):
    """Dagster's freshness checks, evaluated by the freshness sensor at the deadline, page once
    per late asset; the same checks failing in any other run (the chain, a backfill) page no
    one."""
    defs = build_definitions(UTC_PARTITIONS)
    checks = dg.AssetSelection.checks(
        *[
            key
            for checks_def in repository_of(defs).asset_checks_defs_by_key.values()
            for key in checks_def.check_keys
            if key.name == "freshness_check"
        ]
    )
    # the checks alone, as the freshness sensor launches them
    freshness_job = dg.define_asset_job("freshness_job", selection=checks)
    merged = dg.Definitions.merge(defs, dg.Definitions(jobs=[freshness_job]))
    resolved = repository_of(merged).get_job("freshness_job")
    with SlackServer(TOKEN) as slack:
        alerts = SlackAlerts(token=TOKEN, api_url=slack.url)
        sensor = build_alert_sensors(alerts)[1]

        def evaluate(run: dg.ExecuteInProcessResult) -> None:
            dagster_run = platform.instance.get_run_by_id(run.run_id)
            [success] = platform.instance.all_logs(
                run.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS
            )
            context = dg.build_run_status_sensor_context(
                sensor_name="slack_on_failed_freshness",
                dagster_instance=platform.instance,
                dagster_run=dagster_run,
                dagster_event=success.dagster_event,
            )
            sensor(context, slack_alerts=alerts)

        # a manual evaluation (nothing is in): red in the UI, but it pages no one
        manual = resolved.execute_in_process(instance=platform.instance, raise_on_error=False)
        assert {e.passed for e in manual.get_asset_check_evaluations()} == {False}
        evaluate(manual)
        assert slack.messages == []
        # the deadline's evaluation, launched by the freshness sensor, pages once per late asset
        at_deadline = resolved.execute_in_process(
            instance=platform.instance, tags={SENSOR_NAME_TAG: FRESHNESS_SENSOR}
        )
        evaluate(at_deadline)
        assert len(slack.messages) == 3
        assert {m["text"].splitlines()[0] for m in slack.messages} == {
            ":hourglass: ShopSmart data is late: lake/purchases",
            ":hourglass: ShopSmart data is late: features/customer_features",
            ":hourglass: ShopSmart data is late: ml/champion_model",
        }
