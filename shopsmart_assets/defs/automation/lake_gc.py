"""The lake kept in bounds: every night each table is vacuumed, its files that no version
younger than the retention (SHOPSMART_LAKE_RETENTION_DAYS, 30 by default) references
deleted, except those of the versions registered model versions learned from
(`shopsmart-lake gc` does the same by hand). What it removed, freed and kept shows on the run's
page (the op's output metadata)."""

from datetime import timedelta

import dagster as dg

from shopsmart_assets import settings
from shopsmart_assets.defs.automation.switch import schedule_status
from shopsmart_assets.lake.maintenance import vacuum_tables
from shopsmart_assets.partitions import Partitions
from shopsmart_assets.resources import LakeResource, ModelRegistry


@dg.op(
    description="Vacuum the lake's tables past the retention, keeping every version a "
    "registered model version learned from; report what was removed, freed and kept."
)
def collect_lake_garbage(
    context: dg.OpExecutionContext, lake: LakeResource, model_registry: ModelRegistry
) -> dg.Output[None]:
    retention = timedelta(days=settings.lake_retention_days())
    pinned = model_registry.pinned_versions()
    vacuumed = vacuum_tables(lake.root_path, sorted(set(lake.tables.values())), pinned, retention)
    removed = sum(len(v.removed) for v in vacuumed)
    freed = sum(v.freed_bytes for v in vacuumed)
    kept = {v.table: v.kept_versions for v in vacuumed if v.kept_versions}
    summary = (
        f"removed {removed} files ({freed:,} bytes) from {len(vacuumed)} tables; kept the "
        f"versions registered models learned from: {kept or 'none'}"
    )
    context.log.info(summary)
    return dg.Output(
        None,
        metadata={
            "removed_files": removed,
            "freed_bytes": freed,
            "kept_versions": dg.MetadataValue.json(kept),
            "retention_days": retention.days,
            "removed": dg.MetadataValue.json(
                [f"{v.table}/{f}" for v in vacuumed for f in v.removed][:200]
            ),
        },
    )


def build_lake_gc(partitions: Partitions) -> tuple[dg.JobDefinition, dg.ScheduleDefinition]:
    """The clean-up job and its nightly schedule."""

    @dg.job(description="Vacuum the lake's tables past the retention, keeping pinned versions.")
    def lake_gc_job() -> None:
        collect_lake_garbage()

    return lake_gc_job, dg.ScheduleDefinition(
        name="lake_gc_schedule",
        job=lake_gc_job,
        cron_schedule="0 3 * * *",
        execution_timezone=partitions.timezone,
        default_status=schedule_status(),
        description="At 03:00, vacuum the lake's tables: files no version younger than "
        "SHOPSMART_LAKE_RETENTION_DAYS needs go, except those of the versions registered model "
        "versions learned from.",
    )
