"""Alerts: a Slack message for every failed run and every failed freshness check.

Each message names the job, the failed assets and partitions, the first line of the error and
links to the run in the UI. Credentials that might hide in an error (URLs with passwords) are
masked before anything leaves the process.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import dagster as dg

from shopsmart_assets import settings
from shopsmart_assets.defs.automation.freshness import FRESHNESS_SENSOR
from shopsmart_assets.defs.automation.jobs import PARTITION_RANGE_END, PARTITION_RANGE_START
from shopsmart_assets.defs.links import asset_url
from shopsmart_assets.resources.slack import SlackAlerts

# Dagster's documented run tags.
PARTITION_TAG = "dagster/partition"
SENSOR_NAME_TAG = "dagster/sensor_name"
WILL_RETRY_TAG = "dagster/will_retry"
# Dagster tags a failed run `will_retry` just after it stores the failure, so a sensor tick
# can fall between the two: how long an alert waits for the tag to appear.
WILL_RETRY_WAIT_SECONDS = 10.0
_CREDENTIALS = re.compile(r"(://[^:/@\s]+):[^@\s]+@")


class ErrorInfo(Protocol):
    """What Dagster records of an error (its serializable error info)."""

    message: str
    cls_name: str | None
    cause: Any


def mask_credentials(text: str) -> str:
    """`postgresql://etl:secret@db/crm` → `postgresql://etl:***@db/crm`."""
    return _CREDENTIALS.sub(r"\1:***@", text)


def first_error_line(error: ErrorInfo | None) -> str:
    """The first line of the innermost error: what actually went wrong."""
    if error is None:
        return "unknown error"
    while error.cause is not None:
        error = error.cause
    lines = [line for line in error.message.splitlines() if line.strip()]
    return mask_credentials(lines[0].strip() if lines else error.cls_name or "error")


def partitions_of(tags: dict[str, str]) -> str:
    if PARTITION_RANGE_START in tags:
        start = tags[PARTITION_RANGE_START]
        end = tags.get(PARTITION_RANGE_END, start)
        return start if start == end else f"{start} … {end}"
    return tags.get(PARTITION_TAG, "unpartitioned")


@dataclass(frozen=True)
class FailureAlert:
    job: str
    run_id: str
    assets: Sequence[str]
    partitions: str
    error: str
    ui_url: str

    @property
    def run_link(self) -> str:
        return f"{self.ui_url}/runs/{self.run_id}"

    @property
    def text(self) -> str:
        assets = ", ".join(self.assets) or "(no asset step started)"
        return (
            f":rotating_light: ShopSmart run failed: job {self.job}\n"
            f"Assets: {assets}\n"
            f"Partitions: {self.partitions}\n"
            f"Error: {self.error}\n"
            f"Run: {self.run_link}"
        )


def failed_assets(instance: dg.DagsterInstance, run_id: str, failed_steps: Iterable[str]) -> list:
    """Asset keys planned in the run by the steps that failed."""
    steps = set(failed_steps)
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
    ).records
    keys = {
        record.event_log_entry.dagster_event.asset_key.to_user_string()
        for record in records
        if record.event_log_entry.dagster_event
        and record.event_log_entry.dagster_event.step_key in steps
    }
    return sorted(keys)


def unfinished_steps(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """Steps that started and never finished: what a crashed run worker was doing."""

    def steps(kind: dg.DagsterEventType) -> set[str]:
        return {
            record.event_log_entry.dagster_event.step_key
            for record in instance.get_records_for_run(run_id, of_type=kind).records
            if record.event_log_entry.dagster_event
        }

    finished = steps(dg.DagsterEventType.STEP_SUCCESS) | steps(dg.DagsterEventType.STEP_FAILURE)
    return sorted(steps(dg.DagsterEventType.STEP_START) - finished)


def crash_reason(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """Why the run's process died, as Dagster recorded it ("… terminated by signal 9
    (SIGKILL)"), if it did."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records
    for record in reversed(records):
        message = record.event_log_entry.message or ""
        at = message.find("Run execution process")  # after a "[DagsterApiServer] " prefix
        if at >= 0:
            return message[at:].split(". ", 1)[0].rstrip(".")
    return None


def will_retry(
    instance: dg.DagsterInstance, run: dg.DagsterRun, wait: float = WILL_RETRY_WAIT_SECONDS
) -> bool:
    """Whether Dagster re-executes the failed run (its `dagster/will_retry` tag). With run
    retries on, every failed run gets the tag right after its failure event: a run without it
    yet is read again until it has it, for at most `wait` seconds."""
    deadline = time.monotonic() + wait
    while (
        run.tags.get(WILL_RETRY_TAG) is None
        and instance.run_retries_enabled
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)
        run = instance.get_run_by_id(run.run_id) or run
    return run.tags.get(WILL_RETRY_TAG) == "true"


def build_failure_alert(context: dg.RunFailureSensorContext, ui_url: str) -> FailureAlert:
    run = context.dagster_run
    step_failures = context.get_step_failure_events()
    if step_failures:
        error = first_error_line(step_failures[0].event_specific_data.error)
        steps = [e.step_key for e in step_failures]
    else:  # the run died around its steps: a crashed worker, a lost node, a cancelled run
        reason = crash_reason(context.instance, run.run_id)
        error = mask_credentials(
            reason or (context.failure_event.message or "run failed").splitlines()[0]
        )
        steps = unfinished_steps(context.instance, run.run_id)
    if will_retry(context.instance, run):
        error += " (Dagster retries the run automatically)"
    return FailureAlert(
        job=run.job_name,
        run_id=run.run_id,
        assets=failed_assets(context.instance, run.run_id, steps),
        partitions=partitions_of(dict(run.tags)),
        error=error,
        ui_url=ui_url,
    )


def freshness_text(check_key: dg.AssetCheckKey, description: str | None) -> str:
    asset = check_key.asset_key
    return (
        f":hourglass: ShopSmart data is late: {asset.to_user_string()}\n"
        f"{description or check_key.name}\n"
        f"Asset: {asset_url(asset)}"
    )


def failed_freshness(
    instance: dg.DagsterInstance, run_id: str
) -> list[tuple[dg.AssetCheckKey, str]]:
    """The freshness checks that failed in a run, with what they said."""
    failed = []
    for record in instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ).records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if not evaluation.passed:
            failed.append((evaluation.asset_check_key, evaluation.description or ""))
    return failed


def _sensor_status(slack: SlackAlerts) -> tuple[dg.DefaultSensorStatus, str]:
    if slack.enabled:
        return dg.DefaultSensorStatus.RUNNING, f"Posts failed runs to Slack {slack.channel}."
    return dg.DefaultSensorStatus.STOPPED, (
        f"Off: {settings.SLACK_TOKEN_VAR} is not set. Set it (and SHOPSMART_SLACK_CHANNEL) in "
        "the environment of the Dagster daemon and reload to post failed runs to Slack."
    )


def build_alert_sensors(slack: SlackAlerts) -> list[dg.SensorDefinition]:
    status, description = _sensor_status(slack)

    @dg.run_failure_sensor(
        name="slack_on_run_failure",
        description=description,
        default_status=status,
        minimum_interval_seconds=settings.sensor_interval(30),
    )
    def slack_on_run_failure(context: dg.RunFailureSensorContext, slack_alerts: SlackAlerts):
        if not slack_alerts.enabled:
            context.log.info(description)
            return
        alert = build_failure_alert(context, settings.ui_url())
        slack_alerts.post(alert.text)
        context.log.info(f"Alerted Slack {slack_alerts.channel} about run {alert.run_id}")

    @dg.run_status_sensor(
        name="slack_on_failed_freshness",
        run_status=dg.DagsterRunStatus.SUCCESS,
        description=description.replace("failed runs", "freshness checks failed at the deadline"),
        default_status=status,
        minimum_interval_seconds=settings.sensor_interval(60),
    )
    def slack_on_failed_freshness(context: dg.RunStatusSensorContext, slack_alerts: SlackAlerts):
        """Posts each freshness check that failed in an evaluation by the freshness sensor at
        its deadline, once. Evaluations in other runs (the daily chain, a backfill) show in
        the UI but page no one."""
        run = context.dagster_run
        if run.tags.get(SENSOR_NAME_TAG) != FRESHNESS_SENSOR or not slack_alerts.enabled:
            return
        for check_key, said in failed_freshness(context.instance, run.run_id):
            slack_alerts.post(freshness_text(check_key, said))

    return [slack_on_run_failure, slack_on_failed_freshness]
