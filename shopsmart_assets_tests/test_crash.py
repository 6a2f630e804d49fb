"""Crash safety, end to end: `kill -9` of the run worker in the middle of the Spark write of
`lake/purchases`, under a real `dagster dev` (webserver + daemon) with its own DAGSTER_HOME.

What it shows:
(a) while the killed run is dead, every partition of `curated/purchases` and
    `quarantine/purchases` reads back (the Delta table's current version, as users read it)
    exactly as before the run, same files and same rows; the day never written before is absent; no
    staging or temporary file is visible in the tables;
(b) Dagster marks the run FAILURE, and `run_retries` re-executes it once: the retry SUCCEEDS.
    With the default run launcher it is the code server that notices its run worker died and
    fails the run (run monitoring has no worker health check for that launcher); run
    monitoring frees the `spark` pool slot the killed step held, which the retry waits for;
(c) the run-failure sensor posts exactly one Slack message, for the crashed run;
(d) after recovery the tables hold exactly the rows of the uninterrupted run, no duplicates.

How the kill lands mid-write: the test waits for the run's Spark step (`spark_transforms`)
STEP_START in the event log, then polls the filesystem every 0.05 s (while a thread of its
own reads the tables as a user would, so that a slow read never delays the kill) for the first
new Parquet file of the purchases output anywhere in the output's trees (`lake/_staging/…` where the
platform stages, or the tables themselves, so an in-place writer would be caught the same way).
Spark opens a partition's Parquet file when it starts writing it, so that moment is inside the
Spark write, seconds before anything can be published (two Spark writes, then a reconciliation,
come first). The run worker (its pid is in its "Started process for run" engine event) and its
whole subtree (the step process and the Spark JVM under it) are frozen with SIGSTOP, walked
again so no child escapes, then SIGKILLed.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from datetime import date, timedelta
from pathlib import Path
from typing import TypeVar

import dagster as dg
import duckdb
import pytest
import yaml
from deltalake import DeltaTable

from shopsmart_assets.cli.devserver import INSTANCE_CONFIG, dagster_dev, graphql, is_up
from shopsmart_assets.defs.automation.alerts import WILL_RETRY_TAG
from shopsmart_assets.defs.automation.jobs import (
    PARTITION_RANGE_END as ASSET_PARTITION_RANGE_END_TAG,
)
from shopsmart_assets.defs.automation.jobs import (
    PARTITION_RANGE_START as ASSET_PARTITION_RANGE_START_TAG,
)
from shopsmart_assets.defs.spark_step import SPARK_STEP_NAME
from shopsmart_assets.demo.slack_stand_in import SlackServer
from shopsmart_assets_tests import reconcile
from shopsmart_assets_tests.harness import (
    START,
    Platform,
    files_containing,
    generate_sources,
)

pytestmark = [pytest.mark.spark, pytest.mark.e2e]

TOKEN = "xoxb-crash-secret-2468013579"
DAYS = [START + timedelta(days=k) for k in range(4)]
WRITTEN_BEFORE, NEW_DAY = DAYS[:3], DAYS[3]  # NEW_DAY: purchases never written before the crash
TABLES = ("curated/purchases", "quarantine/purchases")
STEP = SPARK_STEP_NAME
# Dagster's documented run-retry tags
AUTO_RETRY_RUN_ID_TAG = "dagster/auto_retry_run_id"
PARENT_RUN_ID_TAG = "dagster/parent_run_id"
RETRY_NUMBER_TAG = "dagster/retry_number"
MONITORING_POLL_SECONDS = 5
FREE_SLOTS_AFTER_SECONDS = 10
# every sensor's minimum interval here (SHOPSMART_SENSOR_INTERVAL_SECONDS), instead of 30 s to
# 10 min: the test waits on them. At 5 s the alert sensor can tick between Dagster storing the
# run's failure and tagging it `will_retry`: the alert must still say that the run is retried.
ALERT_SENSOR_INTERVAL_SECONDS = 5

LAUNCH_RUN = """
mutation LaunchRun($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
  }
}
"""

Snapshot = dict[str, tuple[Counter, frozenset[str]]]
T = TypeVar("T")


def write_instance_config(home: Path) -> None:
    """The project's dagster.yaml with run monitoring polling every 5 s instead of 30 s, and
    freeing a dead run's pool slots after 10 s instead of 60 s (what is tested is that they
    are freed, not how long the production setting waits)."""
    config = yaml.safe_load(INSTANCE_CONFIG.read_text())
    config["run_monitoring"]["poll_interval_seconds"] = MONITORING_POLL_SECONDS
    config["run_monitoring"]["free_slots_after_run_end_seconds"] = FREE_SLOTS_AFTER_SECONDS
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def uninterrupted_runs(home: Path, data: Path) -> None:
    """The state before the crash, in the instance `dagster dev` then serves: the raw zone for
    every day, then the purchases of the days written before, each one uninterrupted run of a
    partition range (three runs). In this process, as the other chain tests run Dagster, not as
    three `dagster asset materialize` processes: each of those imports the platform and loads
    its definitions, and the Spark one starts a JVM of its own, where this one starts the
    worker's JVM, which its next Spark test module reuses (the command line is tested in
    test_operations.py and test_spark_services.py)."""
    sources = data / "sources"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        p = Platform(
            root=data,
            crm_url=f"sqlite:///{sources / 'crm.db'}",
            orders_url=f"sqlite:///{sources / 'orders.db'}",
            instance=instance,
        )
        p.materialize(["raw/orders", "raw/order_items"], *p.hours(DAYS[0], NEW_DAY))
        p.materialize(["raw/crm_customers"], str(DAYS[0]), str(NEW_DAY))
        p.materialize(["lake/purchases"], str(DAYS[0]), str(WRITTEN_BEFORE[-1]))


def read_table(lake: Path, table: str) -> tuple[Counter, frozenset[str]]:
    """A table as users read it (its Delta table's current version): its rows, as a
    multiset, and the files that version lists (relative to the table)."""
    if not DeltaTable.is_deltatable(str(lake / table)):
        return Counter(), frozenset()
    listed = DeltaTable(str(lake / table)).file_uris()
    found = duckdb.connect().execute(
        "SELECT * FROM read_parquet(?, hive_partitioning = true, filename = true)", [listed]
    )
    names = [d[0] for d in found.description]
    at, day = names.index("filename"), names.index("date")
    rows, files = Counter(), set()
    for row in found.fetchall():
        files.add(str(Path(row[at]).relative_to(lake / table)))
        rest = (repr(v) for i, v in enumerate(row) if i not in (at, day))
        rows[(str(row[day]), *rest)] += 1
    return rows, frozenset(files)


def snapshot(lake: Path) -> Snapshot:
    """Rows and files of the purchases tables, as a reader sees them now."""
    return {table: read_table(lake, table) for table in TABLES}


class TableReader:
    """Reads the purchases tables every half second in a thread, as a user would, until the
    block ends; `reads` holds what each read saw (an exception is raised at the end)."""

    def __init__(self, lake: Path) -> None:
        self.lake = lake
        self.reads: list[Snapshot] = []
        self._stop = threading.Event()
        self._failed: list[BaseException] = []
        self._thread = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        try:
            while not self._stop.is_set():
                self.reads.append(snapshot(self.lake))
                self._stop.wait(0.5)
        except BaseException as error:  # noqa: BLE001 - raised again by the test's thread
            self._failed.append(error)

    def __enter__(self) -> TableReader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        if self._failed:
            raise self._failed[0]


def on_days(snap: Snapshot, days: list[date]) -> Snapshot:
    """The part of a snapshot in `days` (rows start with their `date`)."""
    keep = {str(d) for d in days}
    prefixes = tuple(f"date={d}/" for d in days)
    return {
        table: (
            Counter({r: n for r, n in rows.items() if r[0] in keep}),
            frozenset(f for f in files if f.startswith(prefixes)),
        )
        for table, (rows, files) in snap.items()
    }


def assert_no_debris_in_tables(lake: Path) -> None:
    """Only the Delta log and `date=YYYY-MM-DD` partitions in the tables, the partitions
    holding only Parquet files."""
    for table in TABLES:
        for partition in (lake / table).iterdir():
            if partition.name == "_delta_log":
                continue
            assert re.fullmatch(r"date=\d{4}-\d{2}-\d{2}", partition.name), partition
            for item in partition.iterdir():
                assert item.is_file() and item.name.startswith("part-"), item
                assert item.name.endswith(".parquet"), item


def assert_versions_whole(lake: Path) -> None:
    """Every version of the tables reads whole (every file it lists is there), and the
    current one holds every day."""
    for table in TABLES:
        current = DeltaTable(str(lake / table))
        for version in range(current.version() + 1):
            DeltaTable(str(lake / table), version=version).to_pyarrow_table()
        days = {p["date"] for p in current.partitions()}
        assert days == {str(d) for d in DAYS}, (table, days)


def output_files(lake: Path) -> set[Path]:
    """Every Parquet file, hidden or temporary ones included, where purchases output can be."""
    roots = [lake / "_staging", *(lake / table for table in TABLES)]
    found = set()
    for root in roots:
        for directory, _, names in os.walk(root):
            found.update(Path(directory, n) for n in names if ".parquet" in n)
    return found


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, process group) of a live process, or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2])


def alive(pid: int) -> bool:
    stat = proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def descendants(root: int) -> set[int]:
    """Every process below `root` in the process tree, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := proc_stat(int(entry))):
            children.setdefault(stat[1], []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def live_processes_in_group(group: int) -> list[int]:
    """Processes of a process group that still live (zombies only wait for init's reaping)."""
    pids = map(int, filter(str.isdigit, os.listdir("/proc")))
    return [pid for pid in pids if (stat := proc_stat(pid)) and stat[2] == group and alive(pid)]


def kill_tree(root: int) -> dict[int, str]:
    """SIGKILL a process and all its descendants: freeze them first (SIGSTOP, top down, until
    the tree stops changing) so none forks or is reparented away, then kill every one."""
    frozen: set[int] = set()
    tree = {root}
    while tree - frozen:
        for pid in tree - frozen:
            # a short-lived helper (a log tailer, say) may exit on its own meanwhile
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
            frozen.add(pid)
        tree = {root} | descendants(root)
    commands = {pid: command_line(pid) for pid in tree}
    for pid in tree:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return commands


def events(
    instance: dg.DagsterInstance, run_id: str, kind: dg.DagsterEventType
) -> list[dg.EventLogEntry]:
    return [e for e in instance.all_logs(run_id, of_type=kind) if e.dagster_event]


def wait_for(predicate: Callable[[], T], timeout: float, poll: float, what: str) -> T:
    """Poll until `predicate` returns something truthy, and return it."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(poll)
    return result


def sensor_ticks_after(instance: dg.DagsterInstance, sensor: str, after: float) -> int:
    """How many evaluations of a sensor ended after `after` (a timestamp), from the
    instance's tick history."""
    [state] = [s for s in instance.all_instigator_state() if s.instigator_name == sensor]
    ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, after=after)
    return sum(1 for tick in ticks if tick.end_timestamp is not None)


def launch_purchases(url: str, first: date, last: date) -> str:
    """One run of `lake/purchases` (with its blocking check) over first..last, as the UI's
    "Materialize" does for a partition range of a single-run asset."""
    key = {"path": ["lake", "purchases"]}
    params = {
        "selector": {
            "repositoryLocationName": "shopsmart",
            "repositoryName": "__repository__",
            "jobName": "daily_chain_job",
            "assetSelection": [key],
            "assetCheckSelection": [
                {"assetKey": key, "name": "valid_plus_quarantined_equals_source"}
            ],
        },
        "executionMetadata": {
            "tags": [
                {"key": ASSET_PARTITION_RANGE_START_TAG, "value": str(first)},
                {"key": ASSET_PARTITION_RANGE_END_TAG, "value": str(last)},
            ]
        },
    }
    answer = graphql(url, LAUNCH_RUN, {"params": params})["launchRun"]
    assert answer["__typename"] == "LaunchRunSuccess", answer
    return answer["run"]["runId"]


def test_kill_9_mid_spark_write_is_invisible_failed_alerted_and_recovered(tmp_path: Path):
    began = time.monotonic()
    data, home = tmp_path / "data", tmp_path / "home"
    lake, sources = data / "lake", data / "sources"
    # Enough orders that the Spark write of 4 days takes seconds on 2 cores.
    generate_sources(sources, days=len(DAYS), orders_per_day=400)
    write_instance_config(home)
    env = {
        "SHOPSMART_DATA_DIR": str(data),
        "SHOPSMART_TIMEZONE": "UTC",
        "SHOPSMART_START_DATE": str(START),
        "SHOPSMART_UI_URL": "http://ui.shopsmart.test",
        "SHOPSMART_SENSOR_INTERVAL_SECONDS": str(ALERT_SENSOR_INTERVAL_SECONDS),
    }

    # The uninterrupted run: raw zone for 4 days, purchases for the first 3.
    uninterrupted_runs(home, data)
    before = snapshot(lake)
    assert on_days(before, WRITTEN_BEFORE) == before
    for table in TABLES:
        assert not (lake / table / f"date={NEW_DAY}").exists()
    print(
        f"\nuninterrupted run of {WRITTEN_BEFORE[0]}..{WRITTEN_BEFORE[-1]}: "
        + ", ".join(f"{t} {sum(before[t][0].values())} rows" for t in TABLES)
        + f" ({time.monotonic() - began:.0f}s)"
    )

    with SlackServer(TOKEN) as slack:
        env |= {
            "SLACK_BOT_TOKEN": TOKEN,
            "SHOPSMART_SLACK_API_URL": slack.url,
            "SHOPSMART_SLACK_CHANNEL": "#crash-alerts",
        }
        with dagster_dev(home, env=env) as url:
            instance = dg.DagsterInstance.from_config(str(home))
            assert (
                instance.run_monitoring_settings["poll_interval_seconds"] == MONITORING_POLL_SECONDS
            )
            existing = output_files(lake)
            run_id = launch_purchases(url, DAYS[0], NEW_DAY)

            [step_start] = wait_for(
                lambda: [
                    e
                    for e in events(instance, run_id, dg.DagsterEventType.STEP_START)
                    if e.step_key == STEP
                ],
                timeout=180,
                poll=0.2,
                what=f"{STEP} to start in run {run_id}",
            )
            [started] = [
                int(m.group(1))
                for e in events(instance, run_id, dg.DagsterEventType.ENGINE_EVENT)
                if (m := re.match(r"Started process for run \(pid: (\d+)\)", e.message))
            ]
            assert alive(started)
            group = proc_stat(started)[2]

            # Wait for Spark to open the first Parquet file of the output, while a user reads
            # the tables every half second (in a thread of their own, so that a slow read on
            # a busy machine never delays the kill past the write): always the previous version.
            with TableReader(lake) as reader:
                deadline = time.monotonic() + 120
                while not (written := output_files(lake) - existing):
                    assert time.monotonic() < deadline, "the purchases write never began"
                    time.sleep(0.05)
                killed = kill_tree(started)
                killed_at, killed_wall = time.monotonic(), time.time()
            reads = reader.reads
            assert reads and all(read == before for read in reads), "a read saw a change"
            staged = sorted(str(p.relative_to(lake)) for p in written if p.suffix == ".parquet")
            print(
                f"killed {len(killed)} processes {killed_wall - step_start.timestamp:.1f}s after "
                f"STEP_START, as {len(staged)} Parquet files were being written, e.g. "
                f"{staged[0]}; the tables read back unchanged {len(reads)} times until then"
            )
            assert any(c.split(" ", 1)[0].endswith("java") for c in killed.values()), killed

            # (a) dead run: every partition is the previous version, the new day is absent.
            wait_for(lambda: not any(alive(p) for p in killed), 10, 0.05, "killed processes")
            assert snapshot(lake) == before
            assert_no_debris_in_tables(lake)
            for table in TABLES:
                assert not (lake / table / f"date={NEW_DAY}").exists()

            # (b) the run is marked FAILURE, then retried once, and the retry succeeds.
            wait_for(
                lambda: instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE,
                timeout=120,
                poll=0.2,
                what="the killed run to be marked FAILURE",
            )
            failed_after = time.monotonic() - killed_at
            assert snapshot(lake) == before  # still dead, nothing re-ran yet
            crashed = instance.get_run_by_id(run_id)
            explanation = [
                e.message
                for e in events(instance, run_id, dg.DagsterEventType.ENGINE_EVENT)
                if "was terminated by signal 9" in e.message
            ]
            assert explanation, "the failure does not say the worker was killed"
            assert crashed.tags.get(WILL_RETRY_TAG) == "true"
            retry_id = wait_for(
                lambda: instance.get_run_by_id(run_id).tags.get(AUTO_RETRY_RUN_ID_TAG),
                timeout=60,
                poll=0.5,
                what="the automatic retry to be launched",
            )
            retry = wait_for(
                lambda: (r := instance.get_run_by_id(retry_id)).is_finished and r,
                timeout=240,
                poll=1,
                what=f"retry run {retry_id} to finish",
            )
            recovered_after = time.monotonic() - killed_at
            assert retry.status == dg.DagsterRunStatus.SUCCESS, retry.status
            assert retry.tags[PARENT_RUN_ID_TAG] == run_id and retry.tags[RETRY_NUMBER_TAG] == "1"
            assert retry.tags[ASSET_PARTITION_RANGE_START_TAG] == str(DAYS[0])
            assert retry.tags[ASSET_PARTITION_RANGE_END_TAG] == str(NEW_DAY)
            runs = {r.run_id: r.status for r in instance.get_runs()}
            assert runs.pop(run_id) == dg.DagsterRunStatus.FAILURE
            assert runs.pop(retry_id) == dg.DagsterRunStatus.SUCCESS
            # nothing else ran: only the three uninterrupted runs before
            assert list(runs.values()) == [dg.DagsterRunStatus.SUCCESS] * 3, runs
            # The retry waited in the queue for the `spark` pool slot the killed step still
            # held; run monitoring frees it (free_slots_after_run_end_seconds) and nothing
            # of the crashed run is left claimed or pending in the pool.
            record = instance.get_run_record_by_id(retry_id)
            queued_for = record.start_time - record.create_timestamp.timestamp()
            retry_launched_after = record.create_timestamp.timestamp() - killed_wall
            pool = instance.event_log_storage.get_concurrency_info("spark")
            assert pool.claimed_slots == [] and pool.pending_steps == [], pool

            # (c) exactly one Slack message, for the crashed run, once the alert sensor has
            # evaluated twice more after the retry finished: it has seen every run there is.
            slack.wait_for_messages(1, timeout=60)
            finished_at = instance.get_run_record_by_id(retry_id).end_time
            wait_for(
                lambda: sensor_ticks_after(instance, "slack_on_run_failure", finished_at) >= 2,
                timeout=120,
                poll=0.5,
                what="two ticks of the alert sensor after the retry",
            )
            assert len(slack.messages) == 1, [m["text"] for m in slack.messages]
            assert slack.rejected == []
            [message] = slack.messages
            instance.dispose()
        assert not is_up(url)  # dagster dev and its process group are gone
        time.sleep(0.5)
        leftovers = live_processes_in_group(group)
        assert leftovers == [], [command_line(p) for p in leftovers]

    assert message["channel"] == "#crash-alerts"
    # the Slack token is nowhere in the SQLite instance (event log, run storage, logs)
    assert files_containing(home, TOKEN) == []
    assert f"Run: http://ui.shopsmart.test/runs/{run_id}" in message["text"]
    # what a person paged at 2 AM needs: what was running, why it died, that a retry is coming
    assert "Assets: lake/purchases" in message["text"], message["text"]
    assert "terminated by signal 9 (SIGKILL)" in message["text"], message["text"]
    assert "Dagster retries the run automatically" in message["text"], message["text"]

    # (d) the recovered tables: exactly the uninterrupted run's rows, re-published; the new
    # day reconciles with the sources (independent SQL); no line twice.
    after = snapshot(lake)
    assert_no_debris_in_tables(lake)
    # every version is whole: the current one, and those the retry replaced
    assert_versions_whole(lake)
    for table in TABLES:
        rows_before, files_before = before[table]
        rows_after, files_after = on_days(after, WRITTEN_BEFORE)[table]
        assert rows_after == rows_before, table
        assert files_after and not files_after & files_before, table  # a new version
    for day in DAYS:
        reconcile.assert_lake_reconciles(lake, sources / "crm.db", sources / "orders.db", day)
    [(lines, distinct)] = reconcile.lake_sql(
        lake,
        "SELECT count(*), count(DISTINCT (order_id, line_no)) FROM curated__purchases",
    )
    assert lines == distinct

    print(
        "rows before: "
        + ", ".join(f"{t} {sum(before[t][0].values())}" for t in TABLES)
        + f"; after, {WRITTEN_BEFORE[0]}..{WRITTEN_BEFORE[-1]}: "
        + ", ".join(f"{t} {sum(on_days(after, WRITTEN_BEFORE)[t][0].values())}" for t in TABLES)
        + f"; {NEW_DAY}: "
        + ", ".join(f"{t} {sum(on_days(after, [NEW_DAY])[t][0].values())}" for t in TABLES)
    )
    debris = sorted(p.name for p in (lake / "_staging").iterdir())
    print(
        f"run {run_id}: {crashed.status.value} {failed_after:.1f}s after the kill "
        f"({explanation[0].split('. ')[0]}); retry {retry_id} launched "
        f"{retry_launched_after:.1f}s after the kill, queued {queued_for:.0f}s for the spark "
        f"pool slot, {retry.status.value} {recovered_after:.1f}s after the kill; "
        f"Slack messages: {len(slack.messages)}: {message['text']!r}; crashed writer's staging "
        f"left in lake/_staging: {debris}; {time.monotonic() - began:.0f}s in all"
    )
