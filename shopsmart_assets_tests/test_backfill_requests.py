"""Pins the behaviour of the one module that uses Dagster outside its public API
(`backfill_requests.py`): sensor-launched backfills. If an upgrade changes what it relies on,
this fails first; the end-to-end test has the daemon launch such a backfill for real."""

from __future__ import annotations

import dagster as dg
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill

from shopsmart_assets.definitions import build_definitions
from shopsmart_assets.defs.automation.backfill_requests import (
    backfill_in_progress,
    backfill_request,
)
from shopsmart_assets.partitions import build_partitions
from shopsmart_assets_tests.harness import requested_partitions

PARTITIONS = build_partitions("2026-01-01", "America/New_York")
ORDERS = dg.AssetKey(["raw", "orders"])
PURCHASES = dg.AssetKey(["lake", "purchases"])


def test_a_request_carries_exactly_its_partitions_and_tags():
    hours = PARTITIONS.hours_of_day("2026-11-01")
    request = backfill_request(
        {ORDERS: (PARTITIONS.hourly, hours), PURCHASES: (PARTITIONS.daily, ["2026-11-01"])},
        tags={"shopsmart/recovery": "outage"},
    )
    assert request.tags == {"shopsmart/recovery": "outage"}
    assert requested_partitions(request) == {ORDERS: hours, PURCHASES: ["2026-11-01"]}
    assert len(hours) == 25  # the repeated hour survives the round trip
    assert requested_partitions(dg.RunRequest(partition_key="x")) == {}


def test_a_sensor_may_return_it_and_dagster_accepts_it():
    defs = build_definitions(PARTITIONS)
    request = backfill_request({PURCHASES: (PARTITIONS.daily, ["2026-03-08"])}, tags={})

    @dg.sensor(asset_selection=[PURCHASES], name="probe")
    def probe(context):
        return request

    merged = dg.Definitions.merge(defs, dg.Definitions(sensors=[probe]))
    with (
        dg.instance_for_test() as instance,
        dg.build_sensor_context(instance=instance, definitions=merged) as context,
    ):
        [accepted] = probe.evaluate_tick(context).run_requests
    assert requested_partitions(accepted) == {PURCHASES: ["2026-03-08"]}


def test_a_requested_backfill_with_the_tag_is_in_progress():
    """The backfill the daemon makes of a request, as the sensor daemon makes it."""
    request = backfill_request(
        {PURCHASES: (PARTITIONS.daily, ["2026-03-08"])}, tags={"shopsmart/recovery": "outage"}
    )
    with dg.instance_for_test() as instance:
        assert not backfill_in_progress(instance, "shopsmart/recovery", ["outage"])
        instance.add_backfill(
            PartitionBackfill.from_asset_graph_subset(
                backfill_id="probe",
                backfill_timestamp=0.0,
                tags=request.tags,
                dynamic_partitions_store=instance,
                asset_graph_subset=request.asset_graph_subset,
                title=None,
                description=None,
                run_config=None,
            )
        )
        [backfill] = instance.get_backfills()
        assert backfill.status == BulkActionStatus.REQUESTED
        assert backfill_in_progress(instance, "shopsmart/recovery", ["outage", "late-data"])
        assert not backfill_in_progress(instance, "shopsmart/recovery", ["late-data"])
