"""`make ui` as a user runs it: the UI comes up, and Ctrl-C (SIGINT to the terminal's
foreground process group) or SIGTERM to make stops the whole process tree: make, the
`shopsmart-ui` supervisor, `dagster dev`, the webserver, the daemon, the code servers and, with
LIVE=1, the source simulator, which meanwhile writes new orders as time passes while every
schedule and sensor runs on its own."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psutil
import pytest

from shopsmart_assets.cli.devserver import code_location_loaded, free_port, graphql, is_up
from shopsmart_assets.cli.spark_connect import CONNECT, SERVER_NAME, STATE, server_pid, warm_spark
from shopsmart_assets_tests.net import listening_sockets

pytestmark = [pytest.mark.ui]

ROOT = Path(__file__).resolve().parents[1]
AUTOMATION = """
{ workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError {
  ... on RepositoryLocation { repositories {
    schedules { name cronSchedule scheduleState { status } }
    sensors { name sensorState { status } } } } } } } } }
"""


@contextmanager
def make_ui(tmp_path: Path, *args: str) -> Iterator[tuple[subprocess.Popen, str, Path]]:
    """`make ui` in a session of its own, as a terminal runs a foreground job; yields the make
    process, the UI's URL and the data directory; kills what is left on the way out."""
    port = free_port()
    data = tmp_path / "data"
    env = {
        **os.environ,
        "SHOPSMART_DATA_DIR": str(data),
        "DAGSTER_HOME": str(tmp_path / "home"),
        "SHOPSMART_TIMEZONE": "UTC",
        "PORT": str(port),
    }
    for inherited in ("MAKEFLAGS", "SHOPSMART_SPARK_REMOTE", "SHOPSMART_SPARK_MASTER"):
        env.pop(inherited, None)
    make = subprocess.Popen(
        ["make", "--no-print-directory", "ui", *args],
        cwd=ROOT,
        env=env,
        stdout=open(tmp_path / "make-ui.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while not (is_up(url) and code_location_loaded(url)):
            assert make.poll() is None, (tmp_path / "make-ui.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "make ui did not come up"
            time.sleep(1)
        yield make, url, data
    finally:
        for process in [psutil.Process(make.pid), *_tree(make.pid)] if make.poll() is None else []:
            process.kill()


def listening_addresses(port: int) -> set[str]:
    return {address for address, bound, _ in listening_sockets() if bound == port}


def _tree(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _names(processes: list[psutil.Process]) -> list[str]:
    names = []
    for p in processes:
        try:
            names.append(" ".join(p.cmdline()[:4]))
        except psutil.NoSuchProcess:
            names.append(f"{p.pid} (gone)")
    return names


def spark_remotes(processes: list[psutil.Process]) -> dict[str, str | None]:
    """SHOPSMART_SPARK_REMOTE in the environment of each Dagster process (the code servers
    load the code location; the runs inherit it from them and the daemon)."""
    remotes = {}
    for p in processes:
        try:
            command = " ".join(p.cmdline()[:5])
            if "dagster" in command and "python" in command:
                remotes[f"{p.pid} {command}"] = p.environ().get("SHOPSMART_SPARK_REMOTE")
        except psutil.NoSuchProcess:
            continue
    return remotes


QUERY = """
import sys
from pyspark.sql import SparkSession, functions as F
spark = SparkSession.builder.remote(sys.argv[1]).getOrCreate()
rows = spark.range(5000).select((F.col("id") % 7).alias("k"), F.col("id").cast("double").alias("v"))
print(rows.groupBy("k").agg(F.sum("v"), F.countDistinct("v")).orderBy("k").collect()[0])
"""


def run_query_in_new_session(remote: str) -> None:
    """A query through Spark Connect from a process of its own (a session of its own)."""
    done = subprocess.run(
        [sys.executable, "-c", QUERY, remote], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]


def generated_classes(logs: Path) -> int:
    """The classes the Spark server has generated and compiled for queries so far (Spark logs
    each compilation: "CodeGenerator: Code generated in … ms")."""
    return sum(p.read_text(errors="replace").count("Code generated in") for p in logs.iterdir())


def assert_all_stopped(make: subprocess.Popen, tree: list[psutil.Process], url: str) -> None:
    assert make.wait(timeout=90) is not None
    _, alive = psutil.wait_procs(tree, timeout=30)
    assert not alive, f"left running: {_names(alive)}"
    assert not is_up(url)


def test_ctrl_c_stops_make_ui_and_all_its_processes(tmp_path):
    with make_ui(tmp_path) as (make, url, _):
        assert listening_addresses(int(url.rsplit(":", 1)[1])) == {"127.0.0.1"}  # loopback only
        tree = _tree(make.pid)
        # a warm Spark Connect server beside the daemon, on loopback, and every Dagster
        # process of the UI pointed at it
        server = server_pid(tmp_path / "home" / STATE)
        assert server is not None, (tmp_path / "make-ui.log").read_text()[-3000:]
        jvm = psutil.Process(server)
        remotes = spark_remotes(tree)
        assert len(remotes) >= 4, remotes  # dagster dev, webserver, daemon, code server
        [remote] = set(remotes.values())
        port = int(remote.removeprefix("sc://127.0.0.1:"))
        assert listening_addresses(port) == {"127.0.0.1"}
        assert SERVER_NAME in " ".join(jvm.cmdline())
        tree += [jvm, *jvm.children(recursive=True)]  # its driver program too
        # every step is a session of its own, and sessions share the compiled code of their
        # queries: the second step to run a query compiles nothing
        logs = tmp_path / "home" / STATE / "logs"
        run_query_in_new_session(remote)
        compiled = generated_classes(logs)
        run_query_in_new_session(remote)
        assert compiled > 0 and generated_classes(logs) == compiled
        names = " | ".join(_names(tree))
        for part in (
            "shopsmart-ui",
            "dagster dev",
            "dagster_webserver",
            "dagster._daemon",
            "code-server",
        ):
            assert part in names, names
        os.killpg(make.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        assert_all_stopped(make, tree, url)


def history_until_this_hour() -> tuple[str, int]:
    """Yesterday (UTC) and the number of hours from its midnight to the present hour: the
    sources hold everything before this hour, the simulator writes this one live."""
    now = datetime.now(timezone.utc)
    return (now.date() - timedelta(days=1)).isoformat(), 24 + now.hour


def order_count(data: Path) -> int:
    with sqlite3.connect(data / "sources" / "orders.db") as c:
        return c.execute("SELECT count(*) FROM orders").fetchone()[0]


def test_live_ui_runs_itself_and_sigterm_to_make_stops_everything(tmp_path):
    day, hours = history_until_this_hour()
    data = tmp_path / "data"
    subprocess.run(
        [str(ROOT / ".venv" / "bin" / "shopsmart-demo"), "--reset", "--start-date", day,
         "--hours", str(hours), "--orders-per-day", "500"],
        env={**os.environ, "SHOPSMART_DATA_DIR": str(data), "SHOPSMART_TIMEZONE": "UTC"},
        check=True,
        capture_output=True,
    )  # fmt: skip
    before = order_count(data)
    # SPARK=local: the steps start a JVM each, and no Spark Connect server runs
    with make_ui(
        tmp_path, "LIVE=1", "DEMO_ORDERS_PER_DAY=50000", "HOST=0.0.0.0", "SPARK=local"
    ) as (
        make,
        url,
        data,
    ):
        # exposed only when asked to (HOST=0.0.0.0: every interface)
        assert listening_addresses(int(url.rsplit(":", 1)[1])) == {"0.0.0.0"}
        repository = graphql(url, AUTOMATION)["workspaceOrError"]["locationEntries"][0][
            "locationOrLoadError"
        ]["repositories"][0]
        schedules = {s["name"]: s for s in repository["schedules"]}
        assert schedules["hourly_orders_schedule"]["cronSchedule"] == "0 0,1-23 * * *"
        stopped = [
            item["name"]
            for item in repository["schedules"] + repository["sensors"]
            if (item.get("scheduleState") or item.get("sensorState"))["status"] != "RUNNING"
        ]
        assert not stopped, f"not running in live mode: {stopped}"
        # the simulator writes orders as their moments pass (about one every 2 s here)
        deadline = time.monotonic() + 60
        while order_count(data) == before:
            assert time.monotonic() < deadline, "the live simulator wrote no order in 60 s"
            time.sleep(2)
        tree = _tree(make.pid)
        assert "--live" in " | ".join(_names(tree))
        assert set(spark_remotes(tree).values()) == {None}
        assert server_pid(tmp_path / "home" / STATE) is None
        make.send_signal(signal.SIGTERM)
        assert_all_stopped(make, tree, url)
    with sqlite3.connect(data / "sources" / "orders.db") as c:
        latest = c.execute("SELECT max(ordered_at) FROM orders").fetchone()[0]
    assert datetime.fromisoformat(latest) < datetime.now(timezone.utc).replace(tzinfo=None)


@pytest.mark.parametrize(
    "variable, value",
    [("SHOPSMART_SPARK_REMOTE", "sc://10.0.0.9:15002"), ("SHOPSMART_SPARK_MASTER", "yarn")],
)
def test_a_spark_the_environment_names_is_used_as_it_is(
    tmp_path, monkeypatch, capsys, variable, value
):
    monkeypatch.setenv(variable, value)
    with warm_spark(CONNECT, tmp_path / STATE, "shopsmart-ui") as changes:
        assert changes == {}
        assert not (tmp_path / STATE).exists()  # no server started
    assert f"Spark steps use {variable}={value}" in capsys.readouterr().out
