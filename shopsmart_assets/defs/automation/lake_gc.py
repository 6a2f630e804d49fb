"""The lake's version store kept in bounds: every night, kept partition versions older than
the retention (SHOPSMART_LAKE_RETENTION_DAYS, 30 by default) that no registered model version
learned from are deleted (`shopsmart-lake gc` does the same by hand). What it removed, freed
and kept shows on the run's page (the op's output metadata)."""

from datetime import timedelta

import dagster as dg

from shopsmart_assets import settings
from shopsmart_assets.defs.automation.switch import schedule_status
from shopsmart_assets.lake.versions import collect_garbage
from shopsmart_assets.partitions import Partitions
from shopsmart_assets.resources import LakeResource, ModelRegistry


@dg.op(
    description="Delete the lake's kept versions past the retention that no registered "
    "model version references; report what was removed, freed and kept."
)
def collect_lake_garbage(
    context: dg.OpExecutionContext, lake: LakeResource, model_registry: ModelRegistry
) -> dg.Output[None]:
    retention = timedelta(days=settings.lake_retention_days())
    collected = collect_garbage(lake.root_path, model_registry.references(), retention)
    summary = (
        f"removed {len(collected.removed)} kept versions ({collected.freed_bytes:,} bytes); "
        f"kept {len(collected.referenced)} referenced by registered models and "
        f"{len(collected.young)} younger than {retention.days} days"
    )
    context.log.info(summary)
    return dg.Output(
        None,
        metadata={
            "removed_versions": len(collected.removed),
            "freed_bytes": collected.freed_bytes,
            "kept_referenced": len(collected.referenced),
            "kept_young": len(collected.young),
            "retention_days": retention.days,
            "removed": dg.MetadataValue.json(
                [f"{m.table} {m.partition} {m.version}" for m in collected.removed[:200]]
            ),
        },
    )


def build_lake_gc(partitions: Partitions) -> tuple[dg.JobDefinition, dg.ScheduleDefinition]:
    """The clean-up job and its nightly schedule."""

    @dg.job(description="The lake's version store: delete unreferenced versions past retention.")
    def lake_gc_job() -> None:
        collect_lake_garbage()

    return lake_gc_job, dg.ScheduleDefinition(
        name="lake_gc_schedule",
        job=lake_gc_job,
        cron_schedule="0 3 * * *",
        execution_timezone=partitions.timezone,
        default_status=schedule_status(),
        description="At 03:00, delete the lake's kept partition versions older than "
        "SHOPSMART_LAKE_RETENTION_DAYS that no registered model version learned from.",
    )
