"""A warm Spark for the commands that run for a long time (`make ui`, `make live`,
`make cluster`, the image's `spark-connect` service): a Spark Connect server, which the code
location's steps connect to (SHOPSMART_SPARK_REMOTE).

A Spark step in local mode starts a JVM of its own and runs Spark's code cold (interpreted,
then compiled as it goes): most of a small day's step (docs/performance.md). A server that
stays up keeps both, so the nightly and hourly runs of a long-running deployment pay
neither. One-shot commands (`make demo`, `dagster asset materialize`) keep local mode. A
Spark the environment already names (SHOPSMART_SPARK_REMOTE or SHOPSMART_SPARK_MASTER) is
used as it is.

`shopsmart-spark-connect` runs the server in the foreground (the JVM replaces the command, so
that a supervisor's or container runtime's SIGTERM reaches it); `warm_spark` starts it on a
free port of 127.0.0.1 for the lifetime of a command. Both ship in the package: nothing here
reads the project checkout.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from shopsmart_assets import settings
from shopsmart_assets.cli.devserver import free_port, stop_group

# `--spark`: where the steps run Spark
CONNECT, LOCAL = "connect", "local"
LOCAL_MASTER = "local[*]"
STATE = "spark-connect"  # under DAGSTER_HOME: the server's log and pid file
# The Spark plugin that serves Spark Connect from the server's driver (spark_connect_server.py
# says why not Spark's SparkConnectServer class); it names the server on its command line.
SERVER_NAME = "SparkConnectPlugin"
PLUGIN = f"org.apache.spark.sql.connect.{SERVER_NAME}"
DRIVER_PROGRAM = Path(__file__).with_name("spark_connect_server.py")
DEFAULT_PORT = 15002
START_SECONDS = 120


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


def spark_home() -> Path:
    """The installed pyspark's own Spark (its jars and scripts): client and server of the same
    version."""
    import pyspark

    return Path(pyspark.__file__).parent


def server_command(
    host: str,
    port: int,
    master: str = LOCAL_MASTER,
    driver_memory: str | None = None,
    conf: Sequence[str] = (),
) -> list[str]:
    """spark-submit of the Connect server's driver program, listening on host:port."""
    # the driver's own address: loopback, unless executors of a cluster must reach it
    driver_host = "127.0.0.1" if master.startswith("local") else socket.gethostname()
    options = {
        "spark.plugins": PLUGIN,
        # sessions share the compiled code of their queries (no per-session class loaders): a
        # step on a warm server compiles nothing that an earlier step compiled
        "spark.sql.artifact.isolation.enabled": "false",
        "spark.connect.grpc.binding.address": host,
        "spark.connect.grpc.binding.port": str(port),
        "spark.driver.host": driver_host,
        "spark.driver.bindAddress": "127.0.0.1" if driver_host == "127.0.0.1" else "0.0.0.0",
        "spark.ui.enabled": "false",
        "spark.pyspark.python": sys.executable,
    }
    command = [
        str(spark_home() / "bin" / "spark-submit"),
        "--name",
        "ShopSmart Spark Connect",
        "--master",
        master,
        "--driver-memory",
        driver_memory or settings.spark_driver_memory(),
        "--driver-java-options",
        settings.spark_connect_java_options(),
    ]
    for key, value in options.items():
        command += ["--conf", f"{key}={value}"]
    for setting in conf:
        command += ["--conf", setting]
    return [*command, str(DRIVER_PROGRAM)]


def server_main(argv: list[str] | None = None) -> int:
    """`shopsmart-spark-connect`: the Spark Connect server in the foreground, until SIGTERM."""
    parser = argparse.ArgumentParser(prog="shopsmart-spark-connect", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0 in "
                        "a container)")  # fmt: skip
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--master", default=LOCAL_MASTER, help="spark://… for a cluster")
    parser.add_argument("--driver-memory", default=None, help="default SHOPSMART_SPARK_"
                        "DRIVER_MEMORY or 2g")  # fmt: skip
    parser.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE", help="a Spark setting"
    )
    parser.add_argument(
        "--local-settings",
        action="store_true",
        help="with a local master: the settings of a local-mode step (shuffle partitions, "
        "memory), which a step's session cannot set on a server",
    )
    args = parser.parse_args(argv)
    conf = [*server_settings(), *args.conf] if args.local_settings else args.conf
    command = server_command(args.host, args.port, args.master, args.driver_memory, conf)
    env = settings.child_environment(SPARK_HOME=str(spark_home()))
    sys.stdout.flush()
    os.execve(command[0], command, env)  # the JVM takes this process's place (and its signals)


def server_pid(state: Path) -> int | None:
    """The pid of the Spark Connect server started in `state`, if it runs."""
    try:
        pid = int((state / "server.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


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


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _stop_left_over(state: Path) -> None:
    """A server that a killed supervisor left behind in this home is ours: stop it."""
    pid = server_pid(state)
    if pid is None:
        return
    try:
        os.kill(pid, 15)
        for _ in range(60):
            os.kill(pid, 0)
            time.sleep(0.5)
        os.kill(pid, 9)
    except ProcessLookupError:
        pass


def start_server(state: Path, port: int) -> subprocess.Popen:
    """`shopsmart-spark-connect` on 127.0.0.1:port in a process group of its own (Ctrl-C in the
    terminal reaches the supervisor, which stops the server after the runs that use it), its
    log and pid file in `state`; returns once it serves, or fails with the log's tail."""
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / "spark-connect.log"
    command = [
        sys.executable, "-m", "shopsmart_assets.cli.spark_connect",
        "--port", str(port), "--local-settings",
    ]  # fmt: skip
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            env=settings.child_environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    (state / "server.pid").write_text(str(process.pid))
    deadline = time.monotonic() + START_SECONDS
    while not _listening(port):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_group(process, grace=5)
            tail = log_path.read_text(errors="replace")[-3000:]
            raise SparkConnectUnavailable(
                f"the Spark Connect server did not start on 127.0.0.1:{port} (--spark local, or "
                f"SPARK=local make ui, runs without it); the end of {log_path}:\n{tail}"
            )
        time.sleep(0.5)
    return process


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
    _stop_left_over(state)
    port = free_port()
    print(f"{prog}: starting a Spark Connect server on 127.0.0.1:{port}…", flush=True)
    process = start_server(state, port)
    remote = f"sc://127.0.0.1:{port}"
    print(
        f"{prog}: Spark steps run on the warm Spark Connect server {remote} "
        f"(process {process.pid}, logs in {state / 'logs'})",
        flush=True,
    )
    try:
        yield {settings.SPARK_REMOTE_VAR: remote}
    finally:
        print(f"{prog}: stopping the Spark Connect server…", flush=True)
        stop_group(process, grace=30)
        (state / "server.pid").unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(server_main())
