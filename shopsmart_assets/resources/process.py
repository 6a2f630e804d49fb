"""Every change the platform makes to the Python process it runs in, in one place, each said
where it is made:

- Feast is imported with typeguard's `@typechecked` a no-op (`import_feast_unchecked`);
- MLflow's telemetry is off, from the start of every step that uses the registry and in the
  worker processes it starts (`mlflow_telemetry_off`), and MLflow's fluent API
  (process-wide) points at the registry the step uses (`use_mlflow`).

(Dagster's warnings about the beta features the assets use on purpose are silenced while the
definitions are built, in definitions.py, not for the process.)
"""

from __future__ import annotations

import os
import sys
from typing import Any

# MLflow's telemetry looks up a host name: nothing leaves the machine, in a pipeline or not.
MLFLOW_TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true"}


def _unchecked(target: Any = None, **_options: Any) -> Any:
    """typeguard's `@typechecked` as it is under `python -O`: the target, unchanged."""
    return target if target is not None else _unchecked


def import_feast_unchecked() -> None:
    """Import Feast with typeguard's `@typechecked` a no-op, as `python -O` makes it.

    Feast decorates its classes with `@typechecked`, which re-parses and recompiles the
    source of a whole module for each method it instruments, at every import (typeguard
    issue #468): most of the CPU of `import feast`, in every step and command that uses the
    store (docs/performance.md, "Measured in the code's choices"). typeguard
    documents the decorator as checks "not meant to be run in production" and turns it off
    under -O; this does the same for Feast alone (no other dependency of the platform uses
    typeguard), without turning off the interpreter's asserts. Runs before the process's
    first import of Feast."""
    if "feast" in sys.modules:
        return
    import typeguard

    typeguard.typechecked = _unchecked  # Feast binds it as its modules load, lazily too
    import feast  # noqa: F401


def mlflow_telemetry_off() -> None:
    """MLflow's telemetry off in this process and the processes it starts from now on (the
    worker processes that save and load models)."""
    os.environ.update(MLFLOW_TELEMETRY_OFF)


def use_mlflow(tracking_uri: str) -> Any:
    """The `mlflow` module, its telemetry off and its fluent API (`mlflow.start_run`,
    `log_model`: process-wide state) pointed at `tracking_uri` for tracking and registry."""
    mlflow_telemetry_off()
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return mlflow
