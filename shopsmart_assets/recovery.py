"""Self-healing: the two sensors that put the lake right without a manual step.

- `recovery_sensor`: partitions of the last SHOPSMART_RECOVERY_DAYS days whose runs failed (a
  source outage, say), or that are still missing a day later, are backfilled in one Dagster
  backfill as soon as the sources they read answer again.
- `late_orders_sensor`: orders changed in the source after their day was loaded (late status
  changes, refunds, late-arriving rows) are detected by comparing, per day, the source's newest
  `updated_at` and row count with the raw zone's; exactly those days are re-extracted and
  re-run downstream, in one backfill.

Both launch real backfills (Overview → Backfills), tagged `shopsmart/recovery`, ordered by
their dependencies, and wait while one of theirs is still running.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pyarrow.compute as pc
import pyarrow.dataset as ds
import sqlalchemy as sa
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus
from dagster._core.storage.partition_status_cache import AssetPartitionStatus

from shopsmart_assets import settings
from shopsmart_assets.alerts import mask_credentials
from shopsmart_assets.assets.features import CUSTOMER_FEATURES_KEY, ONLINE_STORE_KEY
from shopsmart_assets.assets.lake import PURCHASES_KEY
from shopsmart_assets.assets.ml import CHAMPION_MODEL_KEY, PURCHASE_MODEL_KEY, TRAINING_SET_KEY
from shopsmart_assets.assets.raw import (
    CRM_CUSTOMERS_KEY,
    CRM_INTERACTIONS_KEY,
    ORDER_ITEMS_KEY,
    ORDERS_KEY,
)
from shopsmart_assets.automation import SENSOR_STATUS
from shopsmart_assets.extract import window_params
from shopsmart_assets.partitions import (
    daily_partitions,
    day_of,
    hour_of,
    hourly_partitions,
    previous_day_key,
)
from shopsmart_assets.resources import LakeResource, SourceDatabase

RECOVERY_TAG = "shopsmart/recovery"
HOURLY_KEYS = (ORDERS_KEY, ORDER_ITEMS_KEY)
CRM_KEYS = (CRM_CUSTOMERS_KEY, CRM_INTERACTIONS_KEY)
# What changes when a day's orders change: everything downstream of raw/orders in the chain.
ORDERS_DOWNSTREAM = (
    PURCHASES_KEY,
    CUSTOMER_FEATURES_KEY,
    ONLINE_STORE_KEY,
    TRAINING_SET_KEY,
    PURCHASE_MODEL_KEY,
    CHAMPION_MODEL_KEY,
)
DAILY_CHAIN_KEYS = CRM_KEYS + ORDERS_DOWNSTREAM
# The source tables each source must hold for its extracts to work.
SOURCE_TABLES = {"crm": ("customers", "interactions"), "orders": ("orders", "order_items")}

Partitions = dict[dg.AssetKey, list[str]]


def recent_days(now: datetime, days: int) -> list[str]:
    """The daily partition keys of the `days` complete days before `now`, oldest first."""
    yesterday = previous_day_key(now)
    keys = daily_partitions.get_partition_keys(current_time=now)
    return [key for key in keys if key <= yesterday][-days:]


def hour_keys(day_key: str) -> list[str]:
    """The hourly partitions inside a day (DST days have 23 or 25)."""
    window = daily_partitions.time_window_for_partition_key(day_key)
    return list(hourly_partitions.get_partition_keys_in_time_window(window))


def chain_gaps(
    statuses: Mapping[dg.AssetKey, Mapping[str, AssetPartitionStatus | None]],
    day_keys: Sequence[str],
    yesterday: str,
) -> Partitions:
    """Daily partitions to recover, from each asset's status per day.

    A day is recovered when one of its partitions failed, or when one is still missing after
    the day following it (yesterday belongs to the nightly chain until then). Days with a
    partition in progress are left alone. Within a recovered day, every partition that is not
    materialized is taken.
    """
    gaps: Partitions = {}
    for day in day_keys:
        states = {key: statuses.get(key, {}).get(day) for key in DAILY_CHAIN_KEYS}
        if AssetPartitionStatus.IN_PROGRESS in states.values():
            continue
        failed = AssetPartitionStatus.FAILED in states.values()
        missing = None in states.values() and day < yesterday
        if not (failed or missing):
            continue
        for key, state in states.items():
            if state != AssetPartitionStatus.MATERIALIZED:
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


def backfill_request(partitions: Partitions, reason: str) -> dg.RunRequest:
    """One Dagster backfill of exactly `partitions`."""
    subsets = {
        key: (
            hourly_partitions if key in HOURLY_KEYS else daily_partitions
        ).subset_with_partition_keys(keys)
        for key, keys in partitions.items()
    }
    return dg.RunRequest.for_asset_graph_subset(
        AssetGraphSubset(partitions_subsets_by_asset_key=subsets),
        tags={RECOVERY_TAG: reason},
    )


def describe(partitions: Partitions) -> str:
    days = sorted({key[:10] for keys in partitions.values() for key in keys})
    return f"{sum(map(len, partitions.values()))} partitions of {', '.join(days)}"


def recovery_in_progress(instance: dg.DagsterInstance) -> bool:
    return bool(
        instance.get_backfills(
            filters=BulkActionsFilter(
                statuses=[BulkActionStatus.REQUESTED], tags={RECOVERY_TAG: ["outage", "late-data"]}
            ),
            limit=1,
        )
    )


RECOVERABLE = dg.AssetSelection.assets(*HOURLY_KEYS, *DAILY_CHAIN_KEYS)


def outage_recovery(
    instance: dg.DagsterInstance,
    now: datetime,
    crm_db: SourceDatabase,
    orders_db: SourceDatabase,
) -> dg.RunRequest | dg.SkipReason:
    """The backfill that recovers the last days' failed or missing partitions, if the
    sources they need answer; otherwise why not."""
    if recovery_in_progress(instance):
        return dg.SkipReason("a recovery backfill is still running")
    days = recent_days(now, settings.recovery_days())
    statuses = {
        key: instance.get_status_by_partition(key, days, daily_partitions) or {}
        for key in DAILY_CHAIN_KEYS
    }
    gaps = chain_gaps(statuses, days, previous_day_key(now))
    gap_days = sorted({day for keys in gaps.values() for day in keys})
    hours = [hour for day in gap_days for hour in hour_keys(day)]
    for key in HOURLY_KEYS:
        status = instance.get_status_by_partition(key, hours, hourly_partitions) or {}
        missing = [h for h in hours if status.get(h) != AssetPartitionStatus.MATERIALIZED]
        if missing:
            gaps[key] = missing
    if not gaps:
        return dg.SkipReason(f"the last {len(days)} days are complete")
    needed = {"crm": crm_db} if any(k in gaps for k in CRM_KEYS) else {}
    if any(k in gaps for k in HOURLY_KEYS):
        needed["orders"] = orders_db
    for name, source in needed.items():
        problem = source_problem(source, SOURCE_TABLES[name])
        if problem:
            return dg.SkipReason(f"waiting for the source to recover ({describe(gaps)}): {problem}")
    return backfill_request(gaps, "outage")


@dg.sensor(
    asset_selection=RECOVERABLE,
    minimum_interval_seconds=300,
    default_status=SENSOR_STATUS,
    description="Every 5 minutes: partitions of the last SHOPSMART_RECOVERY_DAYS days (default "
    "7) that failed, or are still missing a day later, are backfilled in one backfill as soon "
    "as their sources answer again.",
)
def recovery_sensor(
    context: dg.SensorEvaluationContext, crm_db: SourceDatabase, orders_db: SourceDatabase
) -> dg.RunRequest | dg.SkipReason:
    now = datetime.now(ZoneInfo(settings.timezone()))
    return outage_recovery(context.instance, now, crm_db, orders_db)


# Late data ------------------------------------------------------------------------------------

Signature = tuple[str | None, int]  # newest updated_at (ISO, UTC) and row count of a day


def source_signatures(source: SourceDatabase, day_keys: Sequence[str]) -> dict[str, Signature]:
    """Per day, the orders source's newest `updated_at` and row count (bound parameters; the
    index on ordered_at serves the window)."""
    query = sa.text(
        "SELECT max(updated_at), count(*) FROM orders"
        " WHERE ordered_at >= :start AND ordered_at < :end"
    ).bindparams(
        sa.bindparam("start", type_=sa.DateTime()), sa.bindparam("end", type_=sa.DateTime())
    )
    signatures = {}
    with source.get_engine().connect() as connection:
        for day in day_keys:
            window = daily_partitions.time_window_for_partition_key(day)
            newest, rows = connection.execute(query, window_params(window.start, window.end)).one()
            signatures[day] = (_iso(newest), int(rows))
    return signatures


def lake_signature(lake: LakeResource, day_key: str) -> Signature | None:
    """The same for what the raw zone holds of a day; None if any hour is missing."""
    paths = [lake.partition_dir("raw", "orders", day_of(k), hour_of(k)) for k in hour_keys(day_key)]
    if not all(p.is_dir() for p in paths):
        return None
    files = [str(f) for p in paths for f in sorted(p.glob("*.parquet"))]
    table = ds.dataset(files, format="parquet").to_table(columns=["updated_at"])
    newest = pc.max(table.column("updated_at")).as_py() if table.num_rows else None
    return (_iso(newest), table.num_rows)


def _iso(value: datetime | str | None) -> str | None:
    """A timestamp as naive-UTC ISO text, whichever way the source or the lake hands it."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)
    return value.isoformat(sep=" ", timespec="microseconds")


def late_days(source: Mapping[str, Signature], lake: Mapping[str, Signature | None]) -> list[str]:
    """Days loaded into the lake whose source rows changed since."""
    return sorted(day for day, seen in lake.items() if seen is not None and source[day] != seen)


def late_data_request(
    now: datetime, orders_db: SourceDatabase, lake: LakeResource, cursor: str | None
) -> tuple[dg.RunRequest | dg.SkipReason, str]:
    """The backfill re-running the days whose orders changed after loading, and the new
    cursor (the source signatures already acted on, so one change launches one backfill)."""
    days = recent_days(now, settings.recovery_days())
    source = source_signatures(orders_db, days)
    loaded = {day: lake_signature(lake, day) for day in days}
    acted: dict[str, list] = json.loads(cursor) if cursor else {}
    changed = [day for day in late_days(source, loaded) if acted.get(day) != list(source[day])]
    if not changed:
        return dg.SkipReason(f"no late changes in the last {len(days)} days"), json.dumps(acted)
    partitions: Partitions = {
        key: [h for d in changed for h in hour_keys(d)] for key in HOURLY_KEYS
    }
    partitions.update({key: list(changed) for key in ORDERS_DOWNSTREAM})
    acted.update({day: list(source[day]) for day in changed})
    acted = {day: sig for day, sig in acted.items() if day in days}
    return backfill_request(partitions, "late-data"), json.dumps(acted, sort_keys=True)


@dg.sensor(
    asset_selection=RECOVERABLE,
    minimum_interval_seconds=600,
    default_status=SENSOR_STATUS,
    description="Every 10 minutes: days of the last SHOPSMART_RECOVERY_DAYS days whose orders "
    "changed in the source after they were loaded (late status changes, refunds) are "
    "re-extracted and re-run downstream, those days only.",
)
def late_orders_sensor(
    context: dg.SensorEvaluationContext, orders_db: SourceDatabase, lake: LakeResource
) -> dg.SensorResult:
    if recovery_in_progress(context.instance):
        return dg.SensorResult(skip_reason="a recovery backfill is still running")
    now = datetime.now(ZoneInfo(settings.timezone()))
    result, cursor = late_data_request(now, orders_db, lake, context.cursor)
    if isinstance(result, dg.SkipReason):
        return dg.SensorResult(skip_reason=result, cursor=cursor)
    return dg.SensorResult(run_requests=[result], cursor=cursor)
