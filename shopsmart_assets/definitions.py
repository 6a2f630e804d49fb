"""The ShopSmart code location: `defs` is what Dagster loads (workspace.yaml).

The definitions are built when the code location loads, from the settings of that moment
(`build_definitions`), never at import: the partitions follow SHOPSMART_TIMEZONE and
SHOPSMART_START_DATE, the schedules the trading hours, and tests build their own.
"""

from __future__ import annotations

import dagster as dg

from shopsmart_assets.alerts import build_alert_sensors
from shopsmart_assets.assets.features import build_feature_assets
from shopsmart_assets.assets.ml import build_ml_assets
from shopsmart_assets.assets.raw import build_raw_assets
from shopsmart_assets.assets.spark_step import build_spark_assets
from shopsmart_assets.automation import build_automation
from shopsmart_assets.catalog import with_owners
from shopsmart_assets.checks import build_freshness
from shopsmart_assets.lineage import Lineage
from shopsmart_assets.partitions import Partitions, build_partitions
from shopsmart_assets.recovery import Chain, build_recovery_sensors
from shopsmart_assets.resources import build_resources

# Independent steps run in parallel, each in its own process, forked from a server that has
# imported the code location once (instead of each step importing Dagster, pandas, pyarrow
# and the definitions again: seconds per step).
STEP_EXECUTOR = dg.multiprocess_executor.configured(
    {"start_method": {"forkserver": {"preload_modules": ["shopsmart_assets.definitions"]}}},
    name="multiprocess_forkserver",
)


def build_assets(partitions: Partitions) -> list[dg.AssetsDefinition]:
    """Every asset of the chain, in layer order, with its owners."""
    return with_owners(
        [
            *build_raw_assets(partitions),
            *build_spark_assets(partitions),
            *build_feature_assets(partitions),
            *build_ml_assets(partitions),
        ]
    )


def build_definitions(partitions: Partitions | None = None) -> dg.Definitions:
    """The code location for these partitions (default: from the settings, read now)."""
    partitions = partitions or build_partitions()
    assets = build_assets(partitions)
    lineage = Lineage.of(assets)
    resources = build_resources(assets)
    automation = build_automation(partitions, lineage)
    freshness = build_freshness(partitions)
    return dg.Definitions(
        executor=STEP_EXECUTOR,
        assets=assets,
        asset_checks=freshness.checks,
        jobs=automation.jobs,
        schedules=automation.schedules,
        sensors=[
            *automation.sensors,
            freshness.sensor,
            *build_recovery_sensors(Chain(lineage, partitions)),
            *build_alert_sensors(resources["slack_alerts"]),
        ],
        resources=resources,
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded by `dagster dev`, `dagster asset materialize -m shopsmart_assets.definitions`."""
    return build_definitions()
