"""Self-healing: the two sensors that put the lake right without a manual step.

- `recovery_sensor`: partitions of the last SHOPSMART_RECOVERY_DAYS days whose runs failed (a
  source outage, say), or that are still missing a day later, are backfilled in one Dagster
  backfill as soon as the sources they read answer again, with every upstream partition they
  read that was never built (however far back their windows reach).
  It also rebuilds every partition of those days whose commit recorded inputs the upstream
  tables no longer hold (lake/provenance.py), whenever that happened: a run that read a day
  before a late-data backfill rebuilt it, which no plan made earlier foresaw.
- `late_orders_sensor`: orders changed in the source after their day was loaded (late status
  changes, refunds, late-arriving rows) are detected by comparing, per day, the source's newest
  `updated_at` and row count with the raw zone's; those days are re-extracted and everything
  whose inputs include them that was materialized is rebuilt (features of the following days,
  training sets, the online store, the model in service), in one backfill.

Both launch real backfills (Overview → Backfills), tagged `shopsmart/recovery`, ordered by
their dependencies, and wait while one of theirs is still running. Why hand-written sensors
rather than declarative automation conditions (`missing()`, `execution_failed()`): a condition
would relaunch failed partitions on every tick while a source is down, each attempt paging
after its retries; these sensors wait until the source answers, then launch one backfill for
the whole gap, and the late-data sensor looks at the source itself, which no condition sees.
Every list of assets here is derived from the definitions (`DeclaredAssetGraph`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pyarrow.compute as pc
import pyarrow.dataset as ds
import sqlalchemy as sa

from shopsmart_assets import settings
from shopsmart_assets.defs.asset_graph import REBUILD_ON_LATE_DATA, DeclaredAssetGraph
from shopsmart_assets.defs.automation.alerts import mask_credentials
from shopsmart_assets.defs.automation.backfill_requests import (
    backfill_in_progress,
    backfill_request,
)
from shopsmart_assets.defs.automation.partition_status import incomplete, partition_statuses
from shopsmart_assets.defs.automation.switch import sensor_status
from shopsmart_assets.defs.raw.assets import EXTRACTIONS, ORDERS_KEY
from shopsmart_assets.lake import partition_subpath
from shopsmart_assets.lake.provenance import (
    current_fingerprints,
    partition_commits,
    stale_partitions,
)
from shopsmart_assets.partitions import AssetPartitions, Partitions, day_of
from shopsmart_assets.resources import LakeResource, SourceDatabase
from shopsmart_assets.sources.extract import ORDERS, aggregate_source_rows, window_params

RECOVERY_TAG = "shopsmart/recovery"
RECOVERY_KINDS = ("outage", "late-data", "stale-inputs")
# Commits of a table read when looking for partitions built from inputs no longer current:
# the partitions of the last days were written by its newest commits.
PROVENANCE_COMMITS = 2_000
# The source resources (`crm_db`, `orders_db`) and the tables each must hold for its extracts.
SOURCE_TABLES = {
    f"{source}_db": tuple(e.source_table for e in EXTRACTIONS.values() if e.source == source)
    for source in dict.fromkeys(e.source for e in EXTRACTIONS.values())
}


@dataclass(frozen=True)
class WatchedAssets:
    """The assets the self-healing sensors look after (the whole chain, hourly and daily), as
    the definitions declare them."""

    graph: DeclaredAssetGraph
    partitions: Partitions

    @property
    def hourly(self) -> list[dg.AssetKey]:
        return self.graph.partitioned_by(self.partitions.hourly)

    @property
    def daily(self) -> list[dg.AssetKey]:
        return self.graph.partitioned_by(self.partitions.daily)

    def sources_of(self, keys: Iterable[dg.AssetKey]) -> list[str]:
        """The source resources these assets read, in a stable order."""
        used = {r for key in keys for r in self.graph.resources.get(key, ())}
        return [name for name in SOURCE_TABLES if name in used]

    def healing(
        self, instance: dg.DagsterInstance, partitions: Mapping[dg.AssetKey, Sequence[str]]
    ) -> AssetPartitions:
        """The partitions, with every upstream partition they need that was never
        materialized (however far back their windows reach): a backfill of them succeeds."""
        return self.graph.with_upstream(partitions, instance.get_materialized_partitions)

    def request(self, partitions: Mapping[dg.AssetKey, Sequence[str]], kind: str) -> dg.RunRequest:
        return backfill_request(
            {k: (self.graph.partitions_def(k), v) for k, v in partitions.items()},
            tags={RECOVERY_TAG: kind},
        )


def recent_days(partitions: Partitions, now: datetime, days: int) -> list[str]:
    """The daily partition keys of the `days` complete days before `now`, oldest first."""
    yesterday = partitions.previous_day_key(now)
    if yesterday is None:
        return []
    keys = partitions.daily.get_partition_keys(current_time=now)
    return [key for key in keys if key <= yesterday][-days:]


def chain_gaps(
    statuses: Mapping[dg.AssetKey, Mapping[str, dg.AssetPartitionStatus | None]],
    daily: Sequence[dg.AssetKey],
    day_keys: Sequence[str],
    yesterday: str,
) -> AssetPartitions:
    """Daily partitions to recover, from each asset's status per day.

    A day is recovered when one of its partitions failed, or when one is still missing after
    the day following it (yesterday belongs to the nightly chain until then). Days with a
    partition in progress are left alone. Within a recovered day, every partition that is not
    materialized is taken.
    """
    gaps: AssetPartitions = {}
    for day in day_keys:
        states = {key: statuses.get(key, {}).get(day) for key in daily}
        if dg.AssetPartitionStatus.IN_PROGRESS in states.values():
            continue
        failed = dg.AssetPartitionStatus.FAILED in states.values()
        missing = None in states.values() and day < yesterday
        if not (failed or missing):
            continue
        for key, state in states.items():
            if state != dg.AssetPartitionStatus.MATERIALIZED:
                gaps.setdefault(key, []).append(day)
    return gaps


def source_problem(source: SourceDatabase, tables: Iterable[str]) -> str | None:
    """None when the source answers and holds `tables`; otherwise what is wrong, with any
    credentials masked."""
    url = sa.engine.make_url(source.url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(url.database.removeprefix("file:"))  # also sqlite:///file:…?uri=true
        if not path.is_file():
            return f"{source.name}: database file {path} does not exist"
    try:
        with source.get_engine().connect() as connection:
            for table in tables:
                connection.execute(sa.select(sa.literal(1)).select_from(sa.table(table)).limit(1))
    except sa.exc.SQLAlchemyError as error:
        first = str(error.orig if getattr(error, "orig", None) else error).splitlines()[0]
        return mask_credentials(f"{source.name}: {first}")
    return None


def summarize(partitions: Mapping[dg.AssetKey, Sequence[str]]) -> str:
    """'16 partitions of 2026-01-02, 2026-01-03'."""
    days = sorted({day_of(key) for keys in partitions.values() for key in keys})
    return f"{sum(map(len, partitions.values()))} partitions of {', '.join(days)}"


def recovery_in_progress(instance: dg.DagsterInstance) -> bool:
    return backfill_in_progress(instance, RECOVERY_TAG, RECOVERY_KINDS)


def outage_recovery(
    instance: dg.DagsterInstance,
    now: datetime,
    sources: Mapping[str, SourceDatabase],
    watched: WatchedAssets,
) -> dg.RunRequest | dg.SkipReason:
    """The backfill that recovers the last days' failed or missing partitions, if the
    sources they need answer; otherwise why not."""
    if recovery_in_progress(instance):
        return dg.SkipReason("a recovery backfill is still running")
    days = recent_days(watched.partitions, now, settings.recovery_days())
    if not days:
        return dg.SkipReason("no complete day yet")
    statuses = partition_statuses(instance, watched.daily, watched.partitions.daily, days)
    gaps = chain_gaps(statuses, watched.daily, days, days[-1])
    gap_days = sorted({day for keys in gaps.values() for day in keys})
    hours = [hour for day in gap_days for hour in watched.partitions.hours_of_day(day)]
    for key in watched.hourly:
        missing = incomplete(instance, [key], watched.partitions.hourly, hours)
        if missing:
            gaps[key] = missing
    if not gaps:
        return dg.SkipReason(f"the last {len(days)} days are complete")
    # what those partitions read and was never built (older training sets, features, hours
    # of days before the horizon) is rebuilt with them, or the backfill would fail on it
    gaps = watched.healing(instance, gaps)
    for name in watched.sources_of(gaps):
        problem = source_problem(sources[name], SOURCE_TABLES[name])
        if problem:
            waiting = f"waiting for the source to recover ({summarize(gaps)})"
            return dg.SkipReason(f"{waiting}: {problem}")
    return watched.request(gaps, "outage")


# Stale inputs ---------------------------------------------------------------------------------


def runs_in_progress(instance: dg.DagsterInstance) -> bool:
    """Whether any run is queued or running (it may be rebuilding what looks stale)."""
    statuses = [
        dg.DagsterRunStatus.QUEUED,
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
    ]
    return bool(instance.get_run_records(dg.RunsFilter(statuses=statuses), limit=1))


def stale_partitions_of_days(
    watched: WatchedAssets, lake: LakeResource, days: Sequence[str]
) -> AssetPartitions:
    """The daily partitions of `days` whose commits recorded inputs that the upstream tables
    no longer hold (rebuilt since, or missing then and there now): lake/provenance.py."""
    graph, current = watched.graph, {}

    def now(location: str, keys: Sequence[str]) -> Mapping[str, str]:
        key, partitions_def = tables[location]
        if location not in current:
            current[location] = lake.table(key, partitions_def).files()
        return current_fingerprints(
            current[location], lambda k: partition_subpath(partitions_def, k), keys
        )

    tables = {
        lake.location(key): (key, graph.partitions_def(key))
        for key in graph.keys
        if key.to_user_string() in lake.tables and graph.specs[key].partitions_def is not None
    }
    stale: AssetPartitions = {}
    for key in watched.daily:
        if key.to_user_string() not in lake.tables:
            continue
        deps = [
            d.asset_key
            for d in graph.specs[key].deps
            if d.asset_key.to_user_string() in lake.tables and d.asset_key in graph.specs
        ]
        if not deps:
            continue
        table = lake.table(key, graph.partitions_def(key))
        commits = partition_commits(table, limit=PROVENANCE_COMMITS)
        commits = {p: c for p, c in commits.items() if p in days}
        if commits and REBUILD_ON_LATE_DATA in (graph.specs[key].metadata or {}):
            # older partitions are history (the models of past days): the newest is served
            newest = max(commits)
            commits = {newest: commits[newest]}

        def needed(partition: str, key: dg.AssetKey = key, deps: list = deps) -> dict:
            return {lake.location(d): graph.upstream_partitions(key, d, [partition]) for d in deps}

        found = [s.partition for s in stale_partitions(commits, needed, now)]
        if found:
            stale[key] = found
    return stale


def stale_inputs_request(
    instance: dg.DagsterInstance, now: datetime, lake: LakeResource, watched: WatchedAssets
) -> dg.RunRequest | dg.SkipReason:
    """The backfill rebuilding the last days' partitions built from inputs that changed
    after they read them, and everything downstream of them that was built."""
    if recovery_in_progress(instance) or runs_in_progress(instance):
        return dg.SkipReason("runs are in progress: their partitions are looked at after")
    days = recent_days(watched.partitions, now, settings.recovery_days())
    stale = stale_partitions_of_days(watched, lake, days)
    if not stale:
        return dg.SkipReason(f"every partition of the last {len(days)} days is current")

    def built(key: dg.AssetKey, keys: list[str]) -> list[str]:
        materialized = instance.get_materialized_partitions(key)
        return [k for k in keys if k in materialized]

    reached = watched.graph.downstream_partitions(stale, now, built)
    return watched.request(watched.healing(instance, reached), "stale-inputs")


# Late data ------------------------------------------------------------------------------------

Signature = tuple[str | None, int]  # newest updated_at (ISO, UTC) and row count of a day


def source_signatures(
    source: SourceDatabase, partitions: Partitions, day_keys: Sequence[str]
) -> dict[str, Signature]:
    """Per day, the orders source's newest `updated_at` and row count (bound parameters; the
    same window as the hourly extracts of the day together)."""
    signatures = {}
    with source.get_engine().connect() as connection:
        for day in day_keys:
            window = partitions.daily.time_window_for_partition_key(day)
            params = window_params(window.start, window.end)
            newest, rows = aggregate_source_rows(
                connection, ORDERS, params, "max(updated_at), count(*)"
            )
            signatures[day] = (_iso(newest), int(rows))
    return signatures


def lake_signature(lake: LakeResource, partitions: Partitions, day_key: str) -> Signature | None:
    """The same for what the raw zone holds of a day; None if any hour is missing."""
    hours = partitions.hours_of_day(day_key)
    held = lake.partition_files(ORDERS_KEY, partitions.hourly, hours)
    if len(held) < len(hours):
        return None
    files = [str(f) for listed in held.values() for f in listed]
    table = ds.dataset(files, format="parquet").to_table(columns=["updated_at"])
    newest = pc.max(table.column("updated_at")).as_py() if table.num_rows else None
    return (_iso(newest), table.num_rows)


def _iso(value: datetime | str | None) -> str | None:
    """A timestamp as naive-UTC ISO text, whichever way the source or the lake hands it."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value  # not a time at all: compared as the text it is
    if value.tzinfo is not None:
        value = value.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)
    return value.isoformat(sep=" ", timespec="microseconds")


def late_days(source: Mapping[str, Signature], lake: Mapping[str, Signature | None]) -> list[str]:
    """Days loaded into the lake whose source rows changed since."""
    return sorted(day for day, seen in lake.items() if seen is not None and source[day] != seen)


def late_change_partitions(
    watched: WatchedAssets, days: Sequence[str], now: datetime, instance: dg.DagsterInstance
) -> AssetPartitions:
    """Everything a late change to these days of orders reaches: the day's hours of every
    extract of the orders source, and every partition downstream of them that was
    materialized, from the partition mappings of the definitions. Partitions that were never
    built (a day that failed, scores of days without a champion) are not the late data's to
    build: the recovery sensor and the nightly chain build them, with what they need."""
    hours = [hour for day in days for hour in watched.partitions.hours_of_day(day)]
    extracts = [k for k in watched.graph.requiring("orders_db") if k in watched.hourly]

    def built(key: dg.AssetKey, keys: list[str]) -> list[str]:
        materialized = instance.get_materialized_partitions(key)
        return [k for k in keys if k in materialized]

    reached = watched.graph.downstream_partitions({key: hours for key in extracts}, now, built)
    return watched.healing(instance, reached)


def late_data_request(
    instance: dg.DagsterInstance,
    now: datetime,
    orders_db: SourceDatabase,
    lake: LakeResource,
    cursor: str | None,
    watched: WatchedAssets,
) -> tuple[dg.RunRequest | dg.SkipReason, str]:
    """The backfill rebuilding what the days whose orders changed after loading reach, and the
    new cursor (the source signatures already acted on, so one change launches one backfill)."""
    days = recent_days(watched.partitions, now, settings.recovery_days())
    source = source_signatures(orders_db, watched.partitions, days)
    loaded = {day: lake_signature(lake, watched.partitions, day) for day in days}
    acted: dict[str, list] = json.loads(cursor) if cursor else {}
    changed = [day for day in late_days(source, loaded) if acted.get(day) != list(source[day])]
    if not changed:
        return dg.SkipReason(f"no late changes in the last {len(days)} days"), json.dumps(acted)
    acted.update({day: list(source[day]) for day in changed})
    acted = {day: sig for day, sig in acted.items() if day in days}
    request = watched.request(late_change_partitions(watched, changed, now, instance), "late-data")
    return request, json.dumps(acted, sort_keys=True)


def build_recovery_sensors(watched: WatchedAssets) -> list[dg.SensorDefinition]:
    selection = dg.AssetSelection.assets(*watched.hourly, *watched.daily)

    @dg.sensor(
        asset_selection=selection,
        minimum_interval_seconds=settings.sensor_interval(300),
        default_status=sensor_status(),
        description="Every 5 minutes: partitions of the last SHOPSMART_RECOVERY_DAYS days "
        "(default 7) that failed, or are still missing a day later, are backfilled in one "
        "backfill as soon as their sources answer again, with every upstream partition they "
        "read that was never built; and, when no run is in progress, partitions built from "
        "inputs that changed since they read them (their commits' provenance) are rebuilt "
        "with everything downstream of them.",
    )
    def recovery_sensor(
        context: dg.SensorEvaluationContext,
        crm_db: SourceDatabase,
        orders_db: SourceDatabase,
        lake: LakeResource,
    ) -> dg.RunRequest | dg.SkipReason:
        now = datetime.now(ZoneInfo(watched.partitions.timezone))
        sources = {"crm_db": crm_db, "orders_db": orders_db}
        outage = outage_recovery(context.instance, now, sources, watched)
        if isinstance(outage, dg.RunRequest):
            return outage
        stale = stale_inputs_request(context.instance, now, lake, watched)
        if isinstance(stale, dg.RunRequest):
            return stale
        return dg.SkipReason(f"{outage.skip_message}; {stale.skip_message}")

    @dg.sensor(
        asset_selection=selection,
        minimum_interval_seconds=settings.sensor_interval(600),
        default_status=sensor_status(),
        description="Every 10 minutes: days of the last SHOPSMART_RECOVERY_DAYS days whose "
        "orders changed in the source after they were loaded (late status changes, refunds) "
        "are re-extracted, and everything they reach downstream is rebuilt, in one backfill.",
    )
    def late_orders_sensor(
        context: dg.SensorEvaluationContext, orders_db: SourceDatabase, lake: LakeResource
    ) -> dg.SensorResult:
        if recovery_in_progress(context.instance):
            return dg.SensorResult(skip_reason="a recovery backfill is still running")
        now = datetime.now(ZoneInfo(watched.partitions.timezone))
        result, cursor = late_data_request(
            context.instance, now, orders_db, lake, context.cursor, watched
        )
        if isinstance(result, dg.SkipReason):
            return dg.SensorResult(skip_reason=result, cursor=cursor)
        return dg.SensorResult(run_requests=[result], cursor=cursor)

    return [recovery_sensor, late_orders_sensor]
