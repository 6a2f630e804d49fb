"""The asset graph read from the definitions: what a late change reaches, from the partition
mappings alone, and lists of assets that a new asset joins by being defined."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dagster as dg

from shopsmart_assets.definitions import build_assets
from shopsmart_assets.defs.asset_graph import LATEST_ONLY, DeclaredAssetGraph
from shopsmart_assets.partitions import build_partitions

PARTITIONS = build_partitions("2026-01-01", "UTC")
NOW = datetime(2026, 2, 10, 3, tzinfo=timezone.utc)  # 40 complete days: 01-01 .. 02-09
DAYS = [str(PARTITIONS.daily.start.date() + timedelta(days=k)) for k in range(40)]


def reached(graph: DeclaredAssetGraph, day: str, ran=None) -> dict[str, list[str]]:
    hours = PARTITIONS.hours_of_day(day)
    changed = {dg.AssetKey(["raw", "orders"]): hours, dg.AssetKey(["raw", "order_items"]): hours}
    found = graph.downstream_partitions(changed, NOW, ran)
    return {k.to_user_string(): v for k, v in found.items()}


def test_a_late_change_reaches_every_partition_whose_inputs_include_it():
    graph = DeclaredAssetGraph.of(build_assets(PARTITIONS))
    found = reached(graph, "2026-01-10")
    after = [d for d in DAYS if d >= "2026-01-10"]
    assert found["lake/purchases"] == ["2026-01-10"]
    assert found["features/customer_features"] == after  # 90-day windows, up to yesterday
    # training set D: features of D-7 and labels of D-6 .. D
    assert found["ml/training_set"] == after
    # what serves: the newest partition only
    for key in ("features/online_store", "ml/purchase_model", "ml/champion_model"):
        assert found[key] == ["2026-02-09"], key
    assert not any(k.startswith("raw/crm") for k in found)
    assert len(found["raw/orders"]) == 24


def test_partitions_that_never_ran_are_left_to_the_nightly_chain():
    graph = DeclaredAssetGraph.of(build_assets(PARTITIONS))

    def ran(key: dg.AssetKey, keys: list[str]) -> list[str]:
        return [k for k in keys if k <= "2026-01-20"]  # nothing after the 20th has run yet

    found = reached(graph, "2026-01-10", ran)
    assert found["features/customer_features"][-1] == "2026-01-20"
    assert found["features/online_store"] == ["2026-01-20"]


def test_a_new_asset_joins_by_being_defined():
    """An asset added downstream of the features is reached by late changes, and listed among
    the daily assets that backfills and recovery take, without touching either."""

    @dg.asset(
        key=["features", "weekly_digest"],
        deps=[
            dg.AssetDep(
                ["features", "customer_features"],
                partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-6),
            )
        ],
        partitions_def=PARTITIONS.daily,
        metadata=LATEST_ONLY,
    )
    def weekly_digest() -> None:
        """A digest over the week's features."""

    graph = DeclaredAssetGraph.of([*build_assets(PARTITIONS), weekly_digest])
    assert dg.AssetKey(["features", "weekly_digest"]) in graph.partitioned_by(PARTITIONS.daily)
    assert reached(graph, "2026-01-10")["features/weekly_digest"] == ["2026-02-09"]
    keys = graph.keys
    assert keys.index(dg.AssetKey(["features", "customer_features"])) < keys.index(
        dg.AssetKey(["features", "weekly_digest"])
    )
