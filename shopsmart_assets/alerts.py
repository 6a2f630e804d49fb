"""Alerts: a Slack message for every failed run and every failed freshness check.

Each message names the job, the failed assets and partitions, the first line of the error and
links to the run in the UI. Credentials that might hide in an error (URLs with passwords) are
masked before anything leaves the process.
"""

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dagster as dg
from dagster._core.events import DagsterEventType
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
    SCHEDULE_NAME_TAG,
    WILL_RETRY_TAG,
)
from dagster._utils.error import SerializableErrorInfo

from shopsmart_assets import settings
from shopsmart_assets.resources.slack import SlackAlerts

FRESHNESS_SCHEDULE = "freshness_schedule"
_CREDENTIALS = re.compile(r"(://[^:/@\s]+):[^@\s]+@")


def mask_credentials(text: str) -> str:
    """`postgresql://etl:secret@db/crm` → `postgresql://etl:***@db/crm`."""
    return _CREDENTIALS.sub(r"\1:***@", text)


def first_error_line(error: SerializableErrorInfo | None) -> str:
    """The first line of the innermost error: what actually went wrong."""
    if error is None:
        return "unknown error"
    while error.cause is not None:
        error = error.cause
    lines = [line for line in error.message.splitlines() if line.strip()]
    return mask_credentials(lines[0].strip() if lines else error.cls_name or "error")


def partitions_of(tags: dict[str, str]) -> str:
    if ASSET_PARTITION_RANGE_START_TAG in tags:
        start = tags[ASSET_PARTITION_RANGE_START_TAG]
        end = tags.get(ASSET_PARTITION_RANGE_END_TAG, start)
        return start if start == end else f"{start} … {end}"
    return tags.get(PARTITION_NAME_TAG, "unpartitioned")


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
        run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED
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

    def steps(kind: DagsterEventType) -> set[str]:
        return {
            record.event_log_entry.dagster_event.step_key
            for record in instance.get_records_for_run(run_id, of_type=kind).records
            if record.event_log_entry.dagster_event
        }

    finished = steps(DagsterEventType.STEP_SUCCESS) | steps(DagsterEventType.STEP_FAILURE)
    return sorted(steps(DagsterEventType.STEP_START) - finished)


def crash_reason(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """Why the run's process died, as Dagster recorded it ("… terminated by signal 9
    (SIGKILL)"), if it did."""
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT).records
    for record in reversed(records):
        message = record.event_log_entry.message or ""
        at = message.find("Run execution process")  # after a "[DagsterApiServer] " prefix
        if at >= 0:
            return message[at:].split(". ", 1)[0].rstrip(".")
    return None


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
    if run.tags.get(WILL_RETRY_TAG) == "true":
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
        f"Asset: {settings.ui_url()}/assets/{'/'.join(asset.path)}"
    )


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
        minimum_interval_seconds=30,
    )
    def slack_on_run_failure(context: dg.RunFailureSensorContext, slack_alerts: SlackAlerts):
        if not slack_alerts.enabled:
            context.log.info(description)
            return
        alert = build_failure_alert(context, settings.ui_url())
        slack_alerts.post(alert.text)
        context.log.info(f"Alerted Slack {slack_alerts.channel} about run {alert.run_id}")

    @dg.sensor(
        name="slack_on_failed_freshness",
        description=description.replace("failed runs", "freshness checks failed at the deadline"),
        default_status=status,
        minimum_interval_seconds=60,
    )
    def slack_on_failed_freshness(context: dg.SensorEvaluationContext, slack_alerts: SlackAlerts):
        """Posts each failed freshness evaluation of a `freshness_schedule` run once.
        Evaluations in other runs (a backfill, a manual run) show in the UI but page no one."""
        from shopsmart_assets.checks import freshness_check_keys

        seen: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
        storage = context.instance.event_log_storage
        posted = 0
        for check_key in freshness_check_keys():
            name = check_key.to_user_string()
            for record in storage.get_asset_check_execution_history(check_key, limit=20):
                if record.id <= seen.get(name, 0):
                    break
                evaluation = record.evaluation
                run = context.instance.get_run_by_id(record.run_id)
                if (
                    evaluation is None
                    or evaluation.passed
                    or run is None
                    or run.tags.get(SCHEDULE_NAME_TAG) != FRESHNESS_SCHEDULE
                ):
                    continue
                if slack_alerts.enabled:
                    slack_alerts.post(freshness_text(check_key, evaluation.description))
                    posted += 1
            history = storage.get_asset_check_execution_history(check_key, limit=1)
            if history:
                seen[name] = max(seen.get(name, 0), history[0].id)
        context.update_cursor(json.dumps(seen, sort_keys=True))
        return dg.SkipReason(f"{posted} freshness alerts posted")

    return [slack_on_run_failure, slack_on_failed_freshness]
