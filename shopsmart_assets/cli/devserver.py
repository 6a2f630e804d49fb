"""A local `dagster dev` (webserver + daemon) for commands and tests that need one, and a
minimal GraphQL client for talking to it, as the UI does."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shopsmart_assets import settings

WORKSPACE = """load_from:
  - python_module:
      module_name: shopsmart_assets.definitions
      location_name: shopsmart
"""
# The instance configuration ships inside the package (the project's top-level dagster.yaml is
# a link to it), so that commands installed from a wheel find it too.
INSTANCE_CONFIG = Path(__file__).resolve().parents[1] / "instance" / "dagster.yaml"


class GraphQLError(RuntimeError):
    pass


def graphql(
    url: str, query: str, variables: dict[str, Any] | None = None, timeout: float = 60
) -> dict[str, Any]:
    """POST a GraphQL query to a Dagster webserver; returns `data` or raises."""
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"{url.rstrip('/')}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        payload = json.loads(response.read())
    if payload.get("errors"):
        raise GraphQLError(json.dumps(payload["errors"])[:2000])
    return payload["data"]


def is_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/server_info", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def code_location_loaded(url: str) -> bool:
    data = graphql(
        url,
        "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
        "locationOrLoadError { __typename } } } } }",
    )
    entries = data["workspaceOrError"]["locationEntries"]
    return any(
        e["loadStatus"] == "LOADED"
        and e["locationOrLoadError"]["__typename"] == "RepositoryLocation"
        for e in entries
    )


@contextmanager
def dagster_dev(
    dagster_home: Path,
    port: int | None = None,
    log: Path | None = None,
    startup_timeout: float = 180,
    env: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    to_terminal: bool = False,
) -> Iterator[str]:
    """Run `dagster dev` (webserver and daemon) in its own process group, with the project's
    instance configuration; yields its URL and stops the whole group on exit (SIGTERM, then
    SIGKILL for whatever still runs). `env` adds to (or overrides) this process's environment
    for the server; its output goes to `log` (default DAGSTER_HOME/dagster-dev.log) or, with
    `to_terminal`, to this process's own."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    if not (dagster_home / "dagster.yaml").exists():
        shutil.copy(INSTANCE_CONFIG, dagster_home / "dagster.yaml")
    (dagster_home / "workspace.yaml").write_text(WORKSPACE)
    port = port or free_port()
    url = f"http://{'127.0.0.1' if host in {'0.0.0.0', '::'} else host}:{port}"
    dagster = Path(sys.executable).with_name("dagster")
    output = None if to_terminal else open(log or dagster_home / "dagster-dev.log", "ab")  # noqa: SIM115
    process = subprocess.Popen(
        [str(dagster), "dev", "-h", host, "-p", str(port), "-w", "workspace.yaml"],
        cwd=dagster_home,
        env=settings.child_environment(**{**(env or {}), "DAGSTER_HOME": str(dagster_home)}),
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    where = output.name if output else "its output above"
    try:
        deadline = time.monotonic() + startup_timeout
        while not (is_up(url) and code_location_loaded(url)):
            if process.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {process.returncode}; see {where}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"dagster dev did not come up on {url}; see {where}")
            time.sleep(1)
        yield url
    finally:
        stop_group(process)
        if output:
            output.close()


def stop_group(process: subprocess.Popen, grace: float = 15) -> None:
    """Stop a process started with `start_new_session=True` and everything in its group:
    SIGTERM, then SIGKILL for what is still running after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            # the group may outlive its leader for a moment
            time.sleep(0.5)
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def _raise_interrupt(signum: int, _frame: object) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def stop_on_signals() -> None:
    """Ctrl-C and SIGTERM raise KeyboardInterrupt in a long-running command, once: the first
    one stops everything, and later ones do not cut the stopping short (which would orphan
    processes)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _raise_interrupt)
