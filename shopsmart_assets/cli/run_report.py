"""What a run did, read from Dagster's event log, for the commands that drive runs on worker
pools (`make cluster-demo`, `make compose-demo`): where each step ran, and why a failed run
failed, in one line."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from shopsmart_assets.settings import mask_urls

SUBMITTED = re.compile(
    r'Submitting celery task for step "(?P<step>[^"]+)" to queue "(?P<queue>[^"]+)"'
)


@dataclass(frozen=True)
class StepPlacement:
    """One step of a run: the queue it was sent to, the worker that ran it, the pid of the
    process it ran in (its STEP_START event's) and the seconds from its submission to its
    start (the broker, a free worker, the worker loading the code location)."""

    step: str
    queue: str
    worker: str
    pid: int | None
    dispatch_seconds: float | None


def step_placements(instance: dg.DagsterInstance, run_id: str) -> list[StepPlacement]:
    """Every step of the run that went through Celery, in the order it was submitted."""
    queues: dict[str, str] = {}
    workers: dict[str, str] = {}
    pids: dict[str, int | None] = {}
    submitted_at: dict[str, float] = {}
    started_at: dict[str, float] = {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == dg.DagsterEventType.ENGINE_EVENT:
            submitted = SUBMITTED.search(event.message or "")
            if submitted:
                queues[submitted["step"]] = submitted["queue"]
                submitted_at[submitted["step"]] = record.timestamp
            metadata = event.engine_event_data.metadata if event.engine_event_data else {}
            if "Celery worker" in metadata:
                workers[event.step_key] = str(metadata["Celery worker"].value)
        elif event.event_type == dg.DagsterEventType.STEP_START:
            pids[event.step_key] = event.pid
            started_at[event.step_key] = record.timestamp
    return [
        StepPlacement(
            step,
            queue,
            workers.get(step, "?"),
            pids.get(step),
            round(started_at[step] - submitted_at[step], 2) if step in started_at else None,
        )
        for step, queue in queues.items()
    ]


def print_placements(placements: Sequence[StepPlacement]) -> None:
    width = max((len(p.step) for p in placements), default=4)
    print(f"  {'step':<{width}}  {'queue':<8} {'dispatch':>8}  worker (pid)")
    for p in placements:
        dispatch = "" if p.dispatch_seconds is None else f"{p.dispatch_seconds:.2f}s"
        print(f"  {p.step:<{width}}  {p.queue:<8} {dispatch:>8}  {p.worker} ({p.pid})")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _error_line(error: object | None, fallback: str | None) -> str:
    """The error in one line: the first error of its chain (causes, then the errors being
    handled) that is not Dagster's own wrapping, and the innermost one where it differs (the
    library's words and the system's, e.g. the broker's address and "Connection refused")."""
    chain = []
    while error is not None and len(chain) < 20:
        chain.append(_last_line(getattr(error, "message", "") or ""))
        error = getattr(error, "cause", None) or getattr(error, "context", None)
    own = [line for line in chain if line and not line.startswith("dagster.")]
    if not own:
        return _last_line(fallback or "") or (chain[0] if chain else "no error recorded")
    return own[0] if own[-1] == own[0] else f"{own[0]} (caused by {own[-1]})"


def failure_line(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """Why the run failed, in one line: the first failed step and its error, or, when no step
    failed (the executor lost its broker, say), the run's error and the steps that were
    running; URLs' passwords masked. None for a run that did not fail."""
    running: dict[str, None] = {}
    run_error = None
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None:
            continue
        kind = event.event_type
        if kind == dg.DagsterEventType.STEP_FAILURE:
            data = event.step_failure_data
            error = _error_line(data.error if data else None, event.message)
            return mask_urls(f"step {event.step_key} failed: {error}")
        if kind == dg.DagsterEventType.STEP_START and event.step_key:
            running[event.step_key] = None
        elif kind == dg.DagsterEventType.STEP_SUCCESS and event.step_key:
            running.pop(event.step_key, None)
        elif kind == dg.DagsterEventType.RUN_FAILURE and run_error is None:
            error = getattr(event.event_specific_data, "error", None)
            run_error = _error_line(error, event.message)
    if run_error is None:
        return None
    during = f" while {', '.join(running)} ran" if running else ""
    return mask_urls(f"run failed{during}: {run_error}")
