"""End to end, the way users work, on a real `dagster dev` (webserver + daemon) with its own
DAGSTER_HOME on free ports of 127.0.0.1:

1. the project is built into a wheel and installed on its own; its `shopsmart-backfill`
   (nothing read from the source tree) starts Dagster by itself and backfills the whole chain
   for a day through the UI's GraphQL mutation;
2. a day whose orders were never extracted fails, and Slack hears about it exactly once;
3. the daemon itself heals it: once `recovery_sensor` is turned on (as in the UI), it launches
   one backfill of the failed day, the daemon runs it, and the day reconciles with the sources.
The data is dated yesterday and the day before, since recovery watches the last days. The
Spark steps run through the test run's Spark Connect server (as a production deployment
would), so that each step connects in about a second instead of starting a JVM of its own;
local mode is what every other chain test runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest

from shopsmart_assets.cli.backfill import LAUNCH
from shopsmart_assets.cli.backfill import wait as backfill_wait
from shopsmart_assets.cli.devserver import dagster_dev, graphql, is_up
from shopsmart_assets.defs.automation.recovery import RECOVERY_TAG
from shopsmart_assets.demo.slack_stand_in import SlackServer
from shopsmart_assets_tests import reconcile
from shopsmart_assets_tests.harness import DAILY, HOURLY, files_containing, generate_sources
from shopsmart_assets_tests.net import listening_sockets
from shopsmart_assets_tests.spark_services import SparkService
from shopsmart_assets_tests.wheel import PIP, build_wheel

pytestmark = [pytest.mark.spark, pytest.mark.e2e, pytest.mark.spark_services]

TOKEN = "xoxb-e2e-secret-9876543210"
START_SENSOR = """
mutation Start($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status } }
    ... on PythonError { message }
  }
}
"""


def listening_addresses(port: int) -> set[str]:
    """The local addresses on which some process listens on TCP `port`."""
    return {address for address, bound, _ in listening_sockets() if bound == port}


def install_wheel(root: Path) -> Path:
    """Build the project's wheel and install it, without its dependencies (this environment has
    them), into a directory of its own; returns that directory."""
    wheel = build_wheel(root)
    target = root / "installed"
    done = subprocess.run(
        [*PIP, "install", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return target


def materialized(instance: dg.DagsterInstance, key: str) -> set[str]:
    return instance.get_materialized_partitions(dg.AssetKey.from_user_string(key))


def test_wheel_backfill_failure_alert_and_recovery_by_the_daemon(
    tmp_path: Path,
    spark_connect: SparkService,
):
    today = datetime.now(timezone.utc).date()
    day1, day2 = today - timedelta(days=2), today - timedelta(days=1)
    data, home = tmp_path / "data", tmp_path / "home"
    sources = data / "sources"
    generate_sources(sources, days=2, orders_per_day=150, start=day1)
    installed = install_wheel(tmp_path)

    with SlackServer(TOKEN) as slack:
        env = {
            "SHOPSMART_DATA_DIR": str(data),
            "SHOPSMART_TIMEZONE": "UTC",
            "SHOPSMART_START_DATE": str(day1),
            "SLACK_BOT_TOKEN": TOKEN,
            "SHOPSMART_SLACK_API_URL": slack.url,
            "SHOPSMART_SLACK_CHANNEL": "#e2e-alerts",
            "SHOPSMART_UI_URL": "http://ui.shopsmart.test",
            "SHOPSMART_SPARK_REMOTE": spark_connect.url,
        }

        # 1. the installed command, outside the source tree, starts its own Dagster
        wheel_env = {
            **os.environ,
            **env,
            "DAGSTER_HOME": str(home),
            "PYTHONPATH": str(installed),
        }
        where = subprocess.run(
            [sys.executable, "-c", "import shopsmart_assets; print(shopsmart_assets.__file__)"],
            env=wheel_env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert where.stdout.startswith(str(installed)), where.stdout + where.stderr
        command = [str(installed / "bin" / "shopsmart-backfill"), "--from", str(day1)]
        backfill = subprocess.run(
            [*command, "--to", str(day1), "--url", "http://127.0.0.1:9"],
            env=wheel_env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert backfill.returncode == 0, backfill.stdout[-3000:] + backfill.stderr[-3000:]
        assert "starting dagster dev" in backfill.stdout and "succeeded" in backfill.stdout
        reconcile.assert_lake_reconciles(
            data / "lake", sources / "crm.db", sources / "orders.db", day1
        )

        # Sensors tick every 5 s instead of every 30 s to 10 min: the test waits on them from
        # here on. (The installed command's Dagster above runs with the product's intervals:
        # nothing there waits on a sensor, and each tick costs its daemon and code server CPU.
        # A run that failed there would still be alerted on by this Dagster's sensor, which
        # goes on from the cursor it keeps in the instance.)
        with dagster_dev(home, env={**env, "SHOPSMART_SENSOR_INTERVAL_SECONDS": "5"}) as url:
            # the UI listens on loopback only, unless told otherwise
            assert listening_addresses(int(url.rsplit(":", 1)[1])) == {"127.0.0.1"}
            instance = dg.DagsterInstance.from_config(str(home))
            [first] = instance.get_backfills()  # recorded in the instance, like the UI's
            assert {k.to_user_string() for k in first.asset_selection} == set(DAILY + HOURLY)

            # 2. a day whose orders were never extracted: the run fails, Slack hears once
            failing = graphql(
                url,
                LAUNCH,
                {
                    "params": {
                        "partitionsByAssets": [
                            {
                                "assetKey": {"path": ["lake", "purchases"]},
                                "partitions": {"range": {"start": str(day2), "end": str(day2)}},
                            }
                        ]
                    }
                },
            )
            assert failing["launchPartitionBackfill"]["__typename"] == "LaunchBackfillSuccess"
            slack.wait_for_messages(1, timeout=240)

            # 3. recovery, turned on as in the UI, by the daemon alone
            started = graphql(
                url,
                START_SENSOR,
                {
                    "selector": {
                        "repositoryLocationName": "shopsmart",
                        "repositoryName": "__repository__",
                        "sensorName": "recovery_sensor",
                    }
                },
            )["startSensor"]
            assert started["__typename"] == "Sensor", started
            recovery = wait_for_recovery_backfill(instance, timeout=300)
            state = backfill_wait(url, recovery.backfill_id, timeout=900, poll=3)
            assert state["status"] in {"COMPLETED", "COMPLETED_SUCCESS"}, state
            assert len(slack.messages) == 1, [m["text"] for m in slack.messages]
            assert slack.rejected == []
            for key in DAILY:
                assert materialized(instance, key) == {str(day1), str(day2)}, key
            for key in HOURLY:
                assert len(materialized(instance, key)) == 48, key
            instance.dispose()
        assert not is_up(url)  # dagster dev and its process group are gone

    [message] = slack.messages
    text = message["text"]
    assert message["channel"] == "#e2e-alerts"
    assert "Assets: lake/purchases" in text and f"Partitions: {day2}" in text
    assert f"needs raw/orders partition {day2}-00:00" in text
    assert "Run: http://ui.shopsmart.test/runs/" in text
    for day in (day1, day2):
        reconcile.assert_lake_reconciles(
            data / "lake", sources / "crm.db", sources / "orders.db", day
        )
    assert files_containing(home, TOKEN) == []
    assert files_containing(data, TOKEN) == []


def wait_for_recovery_backfill(instance: dg.DagsterInstance, timeout: float):
    """The backfill the recovery sensor launches (tagged shopsmart/recovery=outage)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [b for b in instance.get_backfills() if b.tags.get(RECOVERY_TAG) == "outage"]
        if found:
            return found[0]
        time.sleep(2)
    raise AssertionError(f"recovery_sensor launched no backfill within {timeout}s")
