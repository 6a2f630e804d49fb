"""End to end, the way users work: a real `dagster dev` (webserver + daemon) with its own
DAGSTER_HOME on a free port of 127.0.0.1, a partition backfill of the whole chain launched
with the GraphQL mutation the UI's backfill launcher uses, and a failure alerted to a local
Slack-compatible server by the daemon's run-failure sensor."""

from __future__ import annotations

import time
from datetime import timedelta

import dagster as dg
import pytest

from shopsmart_assets.backfill import LAUNCH
from shopsmart_assets.backfill import main as backfill_main
from shopsmart_assets.devserver import dagster_dev, graphql, is_up
from shopsmart_assets_tests import reconcile
from shopsmart_assets_tests.conftest import (
    DAILY,
    HOURLY,
    START,
    files_containing,
    generate_sources,
    listening_sockets,
)
from shopsmart_assets_tests.slack_server import SlackServer

pytestmark = [pytest.mark.spark, pytest.mark.e2e]

TOKEN = "xoxb-e2e-secret-9876543210"
DAY1, DAY2, DAY3 = (START + timedelta(days=k) for k in range(3))


def listening_addresses(port: int) -> set[str]:
    """The local addresses on which some process listens on TCP `port`."""
    return {address for address, bound, _ in listening_sockets() if bound == port}


def test_ui_backfill_of_the_whole_chain_and_a_slack_alert(tmp_path):
    data, home = tmp_path / "data", tmp_path / "home"
    sources = data / "sources"
    generate_sources(sources, days=2, orders_per_day=150)
    with SlackServer(TOKEN) as slack:
        env = {
            "SHOPSMART_DATA_DIR": str(data),
            "SHOPSMART_TIMEZONE": "UTC",
            "SHOPSMART_START_DATE": str(START),
            "SLACK_BOT_TOKEN": TOKEN,
            "SHOPSMART_SLACK_API_URL": slack.url,
            "SHOPSMART_SLACK_CHANNEL": "#e2e-alerts",
            "SHOPSMART_UI_URL": "http://ui.shopsmart.test",
        }
        with dagster_dev(home, env=env) as url:
            # the UI listens on loopback only, unless told otherwise
            assert listening_addresses(int(url.rsplit(":", 1)[1])) == {"127.0.0.1"}
            # the one-command backfill, talking to this Dagster like `make backfill` does
            assert backfill_main(["--from", str(DAY1), "--to", str(DAY2), "--url", url]) == 0

            instance = dg.DagsterInstance.from_config(str(home))
            for key in DAILY:
                assert instance.get_materialized_partitions(dg.AssetKey.from_user_string(key)) == {
                    str(DAY1),
                    str(DAY2),
                }, key
            for key in HOURLY:
                assert (
                    len(instance.get_materialized_partitions(dg.AssetKey.from_user_string(key)))
                    == 48
                ), key
            [backfill] = instance.get_backfills()  # recorded in the instance, like the UI's
            assert {k.to_user_string() for k in backfill.asset_selection} == set(DAILY + HOURLY)
            for day in (DAY1, DAY2):
                reconcile.assert_lake_reconciles(
                    data / "lake", sources / "crm.db", sources / "orders.db", day
                )

            # A day whose orders were never extracted: the run fails, Slack hears once.
            failing = graphql(
                url,
                LAUNCH,
                {
                    "params": {
                        "partitionsByAssets": [
                            {
                                "assetKey": {"path": ["lake", "purchases"]},
                                "partitions": {"range": {"start": str(DAY3), "end": str(DAY3)}},
                            }
                        ]
                    }
                },
            )
            assert failing["launchPartitionBackfill"]["__typename"] == "LaunchBackfillSuccess"
            slack.wait_for_messages(1, timeout=240)
            time.sleep(40)  # another sensor interval: still exactly one message
            assert len(slack.messages) == 1, [m["text"] for m in slack.messages]
            assert slack.rejected == []
            [message] = slack.messages
            instance.dispose()
        assert not is_up(url)  # dagster dev and its process group are gone

    text = message["text"]
    assert message["channel"] == "#e2e-alerts"
    assert "Assets: lake/purchases" in text and f"Partitions: {DAY3}" in text
    assert f"needs raw/orders for {DAY3} hour 00" in text
    assert "Run: http://ui.shopsmart.test/runs/" in text
    assert files_containing(home, TOKEN) == []
    assert files_containing(data, TOKEN) == []
