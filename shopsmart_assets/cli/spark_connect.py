"""A warm Spark for the commands that run for a long time (`make ui`, `make live`,
`make cluster`): a local Spark Connect server on 127.0.0.1 beside the daemon, which the code
location's steps connect to (SHOPSMART_SPARK_REMOTE), stopped with the rest.

A Spark step in local mode starts a JVM of its own and runs Spark's code cold (interpreted,
then compiled as it goes): most of a small day's step (docs/performance.md). A server that
stays up keeps both, so the nightly and hourly runs of a long-running deployment pay
neither. One-shot commands (`make demo`, `dagster asset materialize`) keep local mode. A
Spark the environment already names (SHOPSMART_SPARK_REMOTE or SHOPSMART_SPARK_MASTER) is
used as it is.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shopsmart_assets import settings
from shopsmart_assets.cli.devserver import free_port

SPARK_SH = Path(__file__).resolve().parents[2] / "scripts" / "spark.sh"
# `--spark`: where the steps run Spark
CONNECT, LOCAL = "connect", "local"
LOCAL_MASTER = "local[*]"
STATE = "spark-connect"  # under DAGSTER_HOME: the server's logs and pid file
# What scripts/spark.sh names the server's pid file after (the Connect plugin it runs).
SERVER_NAME = "SparkConnectPlugin"


def add_spark_argument(parser: argparse.ArgumentParser, default: str | None) -> None:
    """`--spark connect|local` of a long-running command."""
    parser.add_argument(
        "--spark",
        choices=(CONNECT, LOCAL),
        default=default,
        help="connect: the Spark steps run on a warm Spark Connect server started on "
        "127.0.0.1 beside the daemon and stopped with it; local: a JVM per step. A Spark "
        "named by SHOPSMART_SPARK_REMOTE or SHOPSMART_SPARK_MASTER is used as it is",
    )


class SparkConnectUnavailable(RuntimeError):
    pass


def _spark_sh(state: Path, *args: str) -> str:
    if not SPARK_SH.exists():
        raise SparkConnectUnavailable(
            f"{SPARK_SH} not found: run from the project checkout, or without the server "
            "(--spark local; SPARK=local make ui)"
        )
    env = {
        **settings.child_environment(),
        "SHOPSMART_SPARK_STATE": str(state),
        "VENV_PYTHON": sys.executable,
        "SPARK_CONNECT_DRIVER_MEMORY": settings.spark_driver_memory(),
    }
    # its own session: Ctrl-C in the terminal reaches the supervisor, which stops the server
    # after the runs that use it
    done = subprocess.run(
        [str(SPARK_SH), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        start_new_session=True,
    )
    if done.returncode != 0:
        raise SparkConnectUnavailable(
            f"scripts/spark.sh {' '.join(args)} failed (--spark local, or SPARK=local make "
            f"ui, runs without the server):\n{done.stderr.strip()[-3000:]}"
        )
    return done.stdout.strip()


def server_pid(state: Path) -> int | None:
    """The pid of the Spark Connect server started in `state`, if it runs."""
    for pid_file in (state / "pids").glob(f"spark-*{SERVER_NAME}*.pid"):
        try:
            pid = int(pid_file.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            continue
        return pid
    return None


def server_settings() -> list[str]:
    """KEY=VALUE settings of the local server: those of a local-mode step (resources/spark.py),
    which a step's session cannot set on a server (they are the server's)."""
    from shopsmart_assets.resources.spark import LOCAL_CONFIG, sql_config

    server = {**sql_config(settings.spark_shuffle_partitions()), **LOCAL_CONFIG}
    return [f"{key}={value}" for key, value in server.items()]


def configured_spark() -> str | None:
    """The Spark the environment names, if any (then no server is started)."""
    if settings.spark_remote():
        return f"{settings.SPARK_REMOTE_VAR}={settings.spark_remote()}"
    if settings.spark_master():
        return f"{settings.SPARK_MASTER_VAR}={settings.spark_master()}"
    return None


@contextmanager
def warm_spark(mode: str, state: Path, prog: str) -> Iterator[dict[str, str]]:
    """For the block, the environment that points the code location at a warm Spark: with
    mode "connect" (and no Spark named in the environment), a Spark Connect server started on
    a free port of 127.0.0.1 from `state`, stopped when the block ends. Yields the variables
    to add to the processes' environment (none in local mode)."""
    configured = configured_spark()
    if mode == LOCAL or configured:
        print(f"{prog}: Spark steps use {configured or 'local mode (a JVM per step)'}", flush=True)
        yield {}
        return
    state.mkdir(parents=True, exist_ok=True)
    # a server a killed supervisor left behind in this home is ours: stop it first
    _spark_sh(state, "connect-down")
    port = free_port()
    print(f"{prog}: starting a Spark Connect server on 127.0.0.1:{port}…", flush=True)
    _spark_sh(state, "connect-up", str(port), LOCAL_MASTER, *server_settings())
    remote = f"sc://127.0.0.1:{port}"
    print(
        f"{prog}: Spark steps run on the warm Spark Connect server {remote} "
        f"(process {server_pid(state)}, logs in {state / 'logs'})",
        flush=True,
    )
    try:
        yield {settings.SPARK_REMOTE_VAR: remote}
    finally:
        print(f"{prog}: stopping the Spark Connect server…", flush=True)
        _spark_sh(state, "connect-down")
