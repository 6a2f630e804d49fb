"""`shopsmart-ui` (`make ui`, `make live`): the Dagster UI and daemon for this project, and with
--live the demo running itself (automation on, the source simulator writing orders as time
passes, alerts to a local Slack stand-in). Ctrl-C or SIGTERM stops the whole process tree."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from shopsmart_assets import settings
from shopsmart_assets.cli.devserver import (
    INSTANCE_CONFIG,
    dagster_dev,
    stop_group,
    stop_on_signals,
)
from shopsmart_assets.cli.spark_connect import CONNECT, STATE, add_spark_argument, warm_spark

# What `make ui LIVE=1` changes so that the demo moves on its own at any hour of any day.
LIVE_SETTINGS = {"SHOPSMART_BUSINESS_HOURS": "00-24", "SHOPSMART_BUSINESS_DAYS": "*"}


def live_environment() -> dict[str, str]:
    """Automation on, and (unless set) trading around the clock, so that the hourly
    schedule extracts every hour that the live simulator writes."""
    env = {"SHOPSMART_AUTOMATION": "on"}
    env.update({k: v for k, v in LIVE_SETTINGS.items() if not settings.is_set(k)})
    return env


def main(argv: list[str] | None = None) -> int:
    """`shopsmart-ui` (`make ui`): the Dagster UI and daemon for this project; with --live,
    automation on and the demo sources receiving orders as time passes. Ctrl-C or SIGTERM
    stops all of it: webserver, daemon, code servers, runs and the simulator."""
    parser = argparse.ArgumentParser(prog="shopsmart-ui", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument(
        "--live",
        action="store_true",
        help="turn schedules and sensors on and run the live source simulator "
        "(`shopsmart-demo --live`) beside the UI",
    )
    parser.add_argument("--orders-per-day", type=int, default=500, help="with --live")
    add_spark_argument(parser, default=CONNECT)
    args = parser.parse_args(argv)
    home = settings.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(INSTANCE_CONFIG, home / "dagster.yaml")
    env = live_environment() if args.live else {}
    stop_on_signals()
    try:
        with (
            _slack_for_live(args.live, env),
            warm_spark(args.spark, home / STATE, "shopsmart-ui") as spark_env,
            dagster_dev(
                home,
                args.port,
                env={**env, **spark_env},
                host=args.host,
                to_terminal=True,
                startup_timeout=300,
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
    if not live or settings.is_set(settings.SLACK_TOKEN_VAR):
        yield
        return
    import secrets

    from shopsmart_assets.demo.slack_stand_in import SlackServer

    def show(message: dict) -> None:
        print(f"\n[Slack stand-in] {message.get('channel')}: {message.get('text')}\n", flush=True)

    with SlackServer(secrets.token_urlsafe(16), on_message=show) as slack:
        env.update({settings.SLACK_TOKEN_VAR: slack.token, settings.SLACK_API_URL_VAR: slack.url})
        print(
            f"shopsmart-ui: no SLACK_BOT_TOKEN: alerts go to a local Slack stand-in "
            f"({slack.url}) and are printed here",
            flush=True,
        )
        yield


def _start_simulator(env: Mapping[str, str], orders_per_day: int) -> subprocess.Popen:
    print(
        "shopsmart-ui: live: schedules and sensors on ("
        + ", ".join(f"{k}={v}" for k, v in env.items() if k != settings.SLACK_TOKEN_VAR)
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
