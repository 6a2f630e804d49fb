"""A lake whose storage refuses writes: full to the last byte, or read-only, on a real small
file system (a tmpfs this test mounts). The step fails at once, without the retries meant for
sources, with one line naming the asset, the partitions, the lake path and the OS error, which
the Slack alert carries; the partitions keep their previous version, no staging is left, and
once the storage is back the same partitions are written again, row for row."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
from deltalake import DeltaTable

from shopsmart_assets.defs.automation.alerts import build_alert_sensors
from shopsmart_assets.demo.slack_stand_in import SlackServer
from shopsmart_assets.lake.storage_failures import os_error_of, probe
from shopsmart_assets.resources import SlackAlerts
from shopsmart_assets_tests.filesystems import fill, remount, small_filesystem
from shopsmart_assets_tests.harness import (
    HOURLY,
    START,
    Platform,
    in_memory_instance,
    platform_at,
    run_failure_context,
)

pytestmark = [pytest.mark.spark]

DAY_2 = START + timedelta(days=1)
PURCHASES = ["lake/purchases"]
TOKEN = "xoxb-lake-storage-test"


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, spark) -> Iterator[Platform]:
    """Three days through lake/purchases, the lake on a 64 MiB file system of its own."""
    root = tmp_path_factory.mktemp("small-lake")
    # a retry that should not happen must not take long to show
    with (
        pytest.MonkeyPatch.context() as env,
        small_filesystem(root / "lake", size_mib=64),
        in_memory_instance() as instance,
    ):
        env.setenv("SHOPSMART_SOURCE_RETRY_DELAY", "0.2")
        p = platform_at(root, instance)
        p.generate(START, days=3, orders_per_day=150)
        last = START + timedelta(days=2)
        p.materialize(HOURLY, *p.hours(START, last))
        p.materialize(["raw/crm_customers", *PURCHASES], str(START), str(last))
        yield p


def rows(p: Platform, day) -> dict[str, list]:
    """Every row of the day's curated and quarantined purchases (the tables' current
    versions), in order."""
    found = {}
    for zone in ("curated", "quarantine"):
        table = DeltaTable(str(p.root / "lake" / zone / "purchases"))
        frame = table.to_pyarrow_table(filters=[("date", "=", str(day))]).drop(["date"])
        found[zone] = sorted(map(str, frame.to_pylist()))
    return found


def failure_of(p: Platform, result: dg.ExecuteInProcessResult) -> tuple[str, int]:
    """The failed step's error line, and how often the step was retried."""
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    retries = [
        e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
    ]
    error = failure.event_specific_data.error
    while error.cause is not None:  # the innermost error: what really went wrong
        error = error.cause
    return error.message.splitlines()[0], len(retries)


def slack_error_line(p: Platform, run_id: str) -> str:
    with SlackServer(TOKEN) as slack:
        alerts = SlackAlerts(token=TOKEN, api_url=slack.url)
        build_alert_sensors(alerts)[0](run_failure_context(p.instance, run_id), slack_alerts=alerts)
        [message] = slack.messages
    return next(line for line in message["text"].splitlines() if line.startswith("Error: "))


def assert_clean(p: Platform) -> None:
    staging = p.root / "lake" / "_staging"
    assert not staging.exists() or list(staging.iterdir()) == []


def test_a_read_only_lake_fails_the_step_at_once_in_one_line(loaded):
    # Before the full-lake test (pytest keeps the file's order): after Spark's writes failed
    # for want of space, the tmpfs sometimes refuses a read-only remount as busy for the rest
    # of the module, though no process holds a file there (seen 2026-12-06; not explained).
    p = loaded
    before = rows(p, DAY_2)
    remount(p.root / "lake", "ro")
    try:
        assert probe(p.root / "lake" / "_staging") == errno.EROFS
        for selection, first in ((PURCHASES, str(DAY_2)), (HOURLY, p.hours(DAY_2)[0])):
            result = p.materialize(selection, first, raise_on_error=False)
            line, retries = failure_of(p, result)
            assert retries == 0, selection
            assert f"{selection[0]} {first}: the lake's storage refused the write" in line
            assert "Read-only file system (EROFS)" in line
    finally:
        remount(p.root / "lake", "rw")
    assert rows(p, DAY_2) == before
    assert_clean(p)


def test_a_full_lake_fails_the_step_at_once_in_one_line_and_keeps_the_day(loaded):
    p = loaded
    before = rows(p, DAY_2)
    filler = fill(p.root / "lake")
    try:
        # Spark's write (a Py4JJavaError whose JVM stack says "No space left on device")
        result = p.materialize(PURCHASES, str(DAY_2), raise_on_error=False)
        line, retries = failure_of(p, result)
        assert retries == 0
        assert line.startswith(
            f"shopsmart_assets.lake.storage_failures.LakeStorageError: lake/purchases {DAY_2}: "
        )
        assert "No space left on device (ENOSPC)" in line
        assert str(p.root / "lake" / "curated" / "purchases") in line
        assert "previous version of each partition is untouched" in line
        assert "py4j" not in line and "TASK_WRITE_FAILED" not in line
        slack = slack_error_line(p, result.run_id)
        assert f"lake/purchases {DAY_2}: the lake's storage refused the write" in slack
        assert "No space left on device (ENOSPC)" in slack
        # pyarrow's write (an extract)
        hour = p.hours(DAY_2)[0]
        result = p.materialize(HOURLY, hour, raise_on_error=False)
        line, retries = failure_of(p, result)
        assert retries == 0
        assert f"raw/orders {hour}: the lake's storage refused the write" in line
        assert "No space left on device (ENOSPC)" in line
        assert rows(p, DAY_2) == before
        assert_clean(p)
    finally:
        filler.unlink()
    # once there is space again, the same partition is written again, row for row
    assert p.materialize(PURCHASES, str(DAY_2)).success
    assert rows(p, DAY_2) == before
    assert_clean(p)


def test_storage_errors_are_told_from_other_errors(tmp_path: Path):
    """A permission error about a file in the lake is a storage failure (root cannot be
    refused one for real here); the same about a file elsewhere, or a source's error, is not."""
    lake = tmp_path / "lake"
    inside = PermissionError(errno.EACCES, "Permission denied", str(lake / "raw" / "x.parquet"))
    assert os_error_of(inside, lake) == errno.EACCES
    outside = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "orders.db"))
    assert os_error_of(outside, lake) is None
    wrapped = RuntimeError("step failed")
    wrapped.__cause__ = OSError(errno.ENOSPC, "Error writing bytes to file")  # pyarrow's
    assert os_error_of(wrapped, lake) == errno.ENOSPC
    assert os_error_of(ConnectionRefusedError(errno.ECONNREFUSED, "refused"), lake) is None
    assert probe(tmp_path) is None
