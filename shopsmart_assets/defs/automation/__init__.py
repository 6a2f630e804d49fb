"""How the pipeline runs itself: the jobs, the hourly schedules, the daily-chain sensor, the
self-healing sensors (outage recovery, late data), the freshness checks, the Slack alerts
and the nightly clean-up of the lake's version store,
all built from the partitions and the asset graph the definitions declare."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dagster as dg

from shopsmart_assets.defs.asset_graph import DeclaredAssetGraph
from shopsmart_assets.defs.automation.alerts import build_alert_sensors
from shopsmart_assets.defs.automation.daily_chain import build_daily_chain_sensor
from shopsmart_assets.defs.automation.freshness import build_freshness
from shopsmart_assets.defs.automation.jobs import chain_jobs
from shopsmart_assets.defs.automation.lake_gc import build_lake_gc
from shopsmart_assets.defs.automation.recovery import WatchedAssets, build_recovery_sensors
from shopsmart_assets.defs.automation.schedules import build_schedules
from shopsmart_assets.partitions import Partitions
from shopsmart_assets.resources import SlackAlerts


@dataclass(frozen=True)
class Automation:
    jobs: list[Any]  # unresolved asset jobs
    schedules: list[dg.ScheduleDefinition]
    sensors: list[dg.SensorDefinition]
    checks: list[dg.AssetChecksDefinition]


def build_automation(
    partitions: Partitions, graph: DeclaredAssetGraph, slack: SlackAlerts
) -> Automation:
    jobs = chain_jobs(partitions, graph)
    lake_gc_job, lake_gc_schedule = build_lake_gc(partitions)
    freshness = build_freshness(partitions)
    return Automation(
        jobs=[jobs.hourly, jobs.daily, lake_gc_job],
        schedules=[*build_schedules(partitions, jobs), lake_gc_schedule],
        sensors=[
            build_daily_chain_sensor(partitions, jobs),
            freshness.sensor,
            *build_recovery_sensors(WatchedAssets(graph, partitions)),
            *build_alert_sensors(slack),
        ],
        checks=list(freshness.checks),
    )
