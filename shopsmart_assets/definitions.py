"""The ShopSmart code location: `defs` is what Dagster loads (workspace.yaml).

The definitions are built when the code location loads, from the settings of that moment
(`build_definitions`), never at import: the partitions follow SHOPSMART_TIMEZONE and
SHOPSMART_START_DATE, the schedules the trading hours, and tests build their own.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import dagster as dg

from shopsmart_assets.defs.asset_graph import DeclaredAssetGraph
from shopsmart_assets.defs.automation import build_automation
from shopsmart_assets.defs.column_catalog import with_documented_columns
from shopsmart_assets.defs.features.assets import build_feature_assets
from shopsmart_assets.defs.ml import build_ml_assets
from shopsmart_assets.defs.ownership import with_owners
from shopsmart_assets.defs.raw.assets import build_raw_assets
from shopsmart_assets.defs.spark_step import build_spark_assets
from shopsmart_assets.defs.worker_pools import step_executor
from shopsmart_assets.partitions import Partitions, build_partitions
from shopsmart_assets.resources import build_resources

# Features Dagster 1.13 still labels beta, used on purpose: BackfillPolicy.single_run() (a
# partition range runs as one Spark job) and partition mappings that may point before the
# first partition (the training set's first week). Their warnings are silenced while the
# assets are built, not for the process.
KNOWN_BETA_PARAMETERS = ("backfill_policy", "allow_nonexistent_upstream_partitions")


def build_assets(partitions: Partitions) -> list[dg.AssetsDefinition]:
    """Every asset of the chain, in layer order, with its owners and its tables' documented
    columns."""
    with warnings.catch_warnings():
        for parameter in KNOWN_BETA_PARAMETERS:
            warnings.filterwarnings("ignore", message=rf"Parameter `{parameter}`")
        assets = [
            *build_raw_assets(partitions),
            *build_spark_assets(partitions),
            *build_feature_assets(partitions),
            *build_ml_assets(partitions),
        ]
        return with_documented_columns(with_owners(assets))


@dataclass(frozen=True)
class CodeLocation:
    """What the code location is built from, as the settings of the moment configure it: the
    partitions, the assets and their graph. `defs` and the commands (backfill, summary,
    serving) all start here."""

    partitions: Partitions
    assets: list[dg.AssetsDefinition]

    @cached_property
    def graph(self) -> DeclaredAssetGraph:
        return DeclaredAssetGraph.of(self.assets)

    def resources(self) -> dict[str, Any]:
        return build_resources(self.assets)


def load_code_location(partitions: Partitions | None = None) -> CodeLocation:
    """The code location for these partitions (default: from the settings, read now)."""
    partitions = partitions or build_partitions()
    return CodeLocation(partitions, build_assets(partitions))


def build_definitions(partitions: Partitions | None = None) -> dg.Definitions:
    """The code location for these partitions (default: from the settings, read now)."""
    location = load_code_location(partitions)
    resources = location.resources()
    automation = build_automation(location.partitions, location.graph, resources["slack_alerts"])
    return dg.Definitions(
        executor=step_executor(),
        assets=location.assets,
        asset_checks=automation.checks,
        jobs=automation.jobs,
        schedules=automation.schedules,
        sensors=automation.sensors,
        resources=resources,
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded by `dagster dev`, `dagster asset materialize -m shopsmart_assets.definitions`."""
    return build_definitions()
