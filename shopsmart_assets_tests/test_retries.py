"""Retries against a real source that is unreachable: a SQLite database file that is not
there (opened read-only, so SQLite cannot create it), then comes back."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from shopsmart_assets.resources import SourceDatabase
from shopsmart_assets_tests.harness import START, Platform, platform_at

STEP = "raw__crm_customers"


def unreachable_crm(p: Platform) -> tuple[SourceDatabase, Path, Path]:
    real = p.root / "crm.db"
    offline = p.root / "crm.offline"
    os.rename(real, offline)
    url = f"sqlite:///file:{real}?mode=ro&uri=true"
    return SourceDatabase(name="crm", url=url), real, offline


def step_events(instance: dg.DagsterInstance, run_id: str, kind: dg.DagsterEventType) -> list:
    return [
        e
        for e in instance.all_logs(run_id, of_type=kind)
        if e.dagster_event and e.dagster_event.step_key == STEP
    ]


@pytest.fixture
def sqlite_platform(tmp_path: Path) -> Iterator[Platform]:
    """A platform on a SQLite-backed instance, as `dagster dev` keeps one: the test reads the
    run's events from another thread while the run writes them, which the in-memory instance's
    shared-cache tables refuse ("database table is locked"), on the reading side or the
    run's."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        yield platform_at(tmp_path, instance)


def bring_back_after(
    p: Platform, retries: int, real: Path, offline: Path
) -> tuple[threading.Thread, list[Exception]]:
    """Restore the source once the step has asked for `retries` retries. The run's events are
    read while the run writes them; a read that fails is tried again at the next poll, so a
    busy storage can delay the source's return but never leave it down."""
    errors: list[Exception] = []

    def asked_for_retries() -> bool:
        try:
            runs = p.instance.get_runs(limit=1)
            return (
                bool(runs)
                and len(
                    step_events(p.instance, runs[0].run_id, dg.DagsterEventType.STEP_UP_FOR_RETRY)
                )
                >= retries
            )
        except Exception as error:  # noqa: BLE001 - read again at the next poll
            errors.append(error)
            return False

    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if asked_for_retries():
                os.rename(offline, real)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread, errors


def test_source_failing_twice_then_recovering_succeeds_on_the_third_attempt(sqlite_platform):
    platform = sqlite_platform
    platform.generate(START, days=1, orders_per_day=30)
    crm, real, offline = unreachable_crm(platform)
    watcher, read_errors = bring_back_after(platform, 2, real, offline)
    result = platform.materialize(
        ["raw/crm_customers"], str(START), crm_db=crm, raise_on_error=False
    )
    watcher.join(timeout=5)
    assert real.exists(), f"the source never came back; failed reads: {read_errors}"
    assert result.success
    run_id = result.run_id
    assert len(step_events(platform.instance, run_id, dg.DagsterEventType.STEP_UP_FOR_RETRY)) == 2
    assert len(step_events(platform.instance, run_id, dg.DagsterEventType.STEP_RESTARTED)) == 2
    assert len(step_events(platform.instance, run_id, dg.DagsterEventType.STEP_SUCCESS)) == 1
    assert platform.path("raw/crm_customers", str(START)).is_dir()


def test_source_that_stays_down_fails_after_four_attempts(platform):
    platform.generate(START, days=1, orders_per_day=30)
    crm, _, _ = unreachable_crm(platform)
    started = time.monotonic()
    result = platform.materialize(
        ["raw/crm_customers"], str(START), crm_db=crm, raise_on_error=False
    )
    elapsed = time.monotonic() - started
    assert not result.success
    run_id = result.run_id
    assert len(step_events(platform.instance, run_id, dg.DagsterEventType.STEP_UP_FOR_RETRY)) == 3
    failures = step_events(platform.instance, run_id, dg.DagsterEventType.STEP_FAILURE)
    assert len(failures) == 1
    error = failures[0].dagster_event.event_specific_data.error
    while error.cause:
        error = error.cause
    assert "unable to open database file" in error.message
    assert elapsed >= 2 + 6 + 14 - 3 * 2  # the backoff was really waited out
    # … and it grew exponentially: each retry waited at least its delay (about 2, 6, 14 s,
    # each ± 2) between the step asking for it and the step starting again
    asked = step_events(platform.instance, run_id, dg.DagsterEventType.STEP_UP_FOR_RETRY)
    again = step_events(platform.instance, run_id, dg.DagsterEventType.STEP_RESTARTED)
    waits = [b.timestamp - a.timestamp for a, b in zip(asked, again, strict=True)]
    assert [w >= low for w, low in zip(waits, (0, 4, 12), strict=True)] == [True] * 3, waits
    assert waits[2] > waits[0], waits
    assert not platform.path("raw/crm_customers", str(START)).is_dir()


def test_schema_drift_is_not_retried_and_writes_nothing(platform):
    import sqlite3

    platform.generate(START, days=1, orders_per_day=30)
    with sqlite3.connect(platform.root / "crm.db") as c:
        c.execute("ALTER TABLE customers RENAME COLUMN segment TO customer_segment")
    result = platform.materialize(["raw/crm_customers"], str(START), raise_on_error=False)
    assert not result.success
    run_id = result.run_id
    assert step_events(platform.instance, run_id, dg.DagsterEventType.STEP_UP_FOR_RETRY) == []
    [failure] = step_events(platform.instance, run_id, dg.DagsterEventType.STEP_FAILURE)
    message = failure.dagster_event.event_specific_data.error.message
    for part in ("raw/crm_customers", "table 'customers'", "column 'segment'", str(START)):
        assert part in message, message
    assert not platform.path("raw/crm_customers", str(START)).is_dir()
