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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

WORKSPACE = """load_from:
  - python_module:
      module_name: shopsmart_assets.definitions
      location_name: shopsmart
"""
# The instance configuration ships inside the package (the project's top-level dagster.yaml is
# a link to it), so that commands installed from a wheel find it too.
INSTANCE_CONFIG = Path(__file__).resolve().parent / "instance" / "dagster.yaml"


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
        env={**os.environ, **(env or {}), "DAGSTER_HOME": str(dagster_home)},
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


# What `make ui LIVE=1` changes so that the demo moves on its own at any hour of any day.
LIVE_SETTINGS = {"SHOPSMART_BUSINESS_HOURS": "00-24", "SHOPSMART_BUSINESS_DAYS": "*"}


def live_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """Automation on, and (unless set) trading around the clock, so that the hourly
    schedule extracts every hour that the live simulator writes."""
    env = {"SHOPSMART_AUTOMATION": "on"}
    env.update({k: v for k, v in LIVE_SETTINGS.items() if not environ.get(k, "").strip()})
    return env


def _raise_interrupt(signum: int, _frame: object) -> None:
    """The first Ctrl-C or SIGTERM stops everything; later ones do not cut the stopping
    short (which would orphan processes)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def ui_main(argv: list[str] | None = None) -> int:
    """`shopsmart-ui` (`make ui`): the Dagster UI and daemon for this project; with --live,
    automation on and the demo sources receiving orders as time passes. Ctrl-C or SIGTERM
    stops all of it: webserver, daemon, code servers, runs and the simulator."""
    import argparse

    parser = argparse.ArgumentParser(prog="shopsmart-ui", description=ui_main.__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument(
        "--live",
        action="store_true",
        help="turn schedules and sensors on and run the live source simulator "
        "(`shopsmart-demo --live`) beside the UI",
    )
    parser.add_argument("--orders-per-day", type=int, default=500, help="with --live")
    args = parser.parse_args(argv)
    home = Path(os.environ.get("DAGSTER_HOME") or ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(INSTANCE_CONFIG, home / "dagster.yaml")
    env = live_environment(os.environ) if args.live else {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _raise_interrupt)
    try:
        with (
            _slack_for_live(args.live, env),
            dagster_dev(
                home, args.port, env=env, host=args.host, to_terminal=True, startup_timeout=300
            ) as url,
        ):
            print(f"\nshopsmart-ui: Dagster UI on {url} (DAGSTER_HOME {home})", flush=True)
            simulator = _start_simulator(env, args.orders_per_day) if args.live else None
            print("shopsmart-ui: Ctrl-C stops everything", flush=True)
            try:
                while True:
                    time.sleep(1)
                    if simulator is not None and simulator.poll() not in (None, 0):
                        print(
                            f"shopsmart-ui: the live simulator stopped (exit "
                            f"{simulator.returncode})",
                            flush=True,
                        )
                        simulator = None
            finally:
                print(
                    "\nshopsmart-ui: stopping the UI, the daemon and their processes…", flush=True
                )
                if simulator is not None:
                    stop_group(simulator, grace=10)
    except KeyboardInterrupt:
        pass  # stopped on purpose, everything stopped with it
    return 0


@contextmanager
def _slack_for_live(live: bool, env: dict[str, str]) -> Iterator[None]:
    """Without a Slack token, the live demo's alerts go to a local Slack stand-in that prints
    them here, so that a failure is seen as it would be in the channel."""
    if not live or os.environ.get("SLACK_BOT_TOKEN", "").strip():
        yield
        return
    import secrets

    from shopsmart_assets.demo.slack_stand_in import SlackServer

    def show(message: dict) -> None:
        print(f"\n[Slack stand-in] {message.get('channel')}: {message.get('text')}\n", flush=True)

    with SlackServer(secrets.token_urlsafe(16), on_message=show) as slack:
        env.update({"SLACK_BOT_TOKEN": slack.token, "SHOPSMART_SLACK_API_URL": slack.url})
        print(
            f"shopsmart-ui: no SLACK_BOT_TOKEN: alerts go to a local Slack stand-in "
            f"({slack.url}) and are printed here",
            flush=True,
        )
        yield


def _start_simulator(env: Mapping[str, str], orders_per_day: int) -> subprocess.Popen:
    print(
        "shopsmart-ui: live: schedules and sensors on ("
        + ", ".join(f"{k}={v}" for k, v in env.items() if k != "SLACK_BOT_TOKEN")
        + "); the source simulator writes new orders as time passes",
        flush=True,
    )
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("shopsmart-demo")),
            "--live",
            "--orders-per-day",
            str(orders_per_day),
        ],
        start_new_session=True,
    )
