"""The lake: Delta tables whose partitions are replaced atomically and idempotently, their
old versions readable until vacuum, and paths derived from the definitions."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from shopsmart_assets.lake import (
    MissingPartitionError,
    lake_table,
    lake_tables,
    part_file_name,
    partition_subpath,
)
from shopsmart_assets.lake.legacy import LegacyLakeError, convert_legacy_lake, legacy_marks
from shopsmart_assets.lake.maintenance import vacuum_tables
from shopsmart_assets.lake.staging import Staging
from shopsmart_assets.partitions import build_partitions
from shopsmart_assets.resources import LakeResource

KEY = dg.AssetKey(["raw", "t"])
TABLES = {"raw/t": "raw/t"}
HOURLY = build_partitions("2026-01-01", "UTC").hourly
HOUR = "2026-01-02-05:00"


def make_lake(root, **settings) -> LakeResource:
    return LakeResource(root=str(root), tables=TABLES, **settings)


def write(lake: LakeResource, values: list[int]) -> int:
    """One partition written the way steps write: staged, then committed; its version."""
    with Staging(lake.root_path).directory() as staged:
        pq.write_table(pa.table({"x": values}), staged / part_file_name())
        subpath = partition_subpath(HOURLY, HOUR)
        return (
            lake.table(KEY, HOURLY)
            .commit({subpath: [staged / f for f in os.listdir(staged)]})
            .version
        )


def current(lake: LakeResource) -> list[int]:
    [files] = lake.partition_files(KEY, HOURLY, [HOUR]).values()
    return pq.read_table([str(f) for f in files]).column("x").to_pylist()


def test_rewrite_replaces_the_partition_and_the_old_version_stays_readable(tmp_path):
    lake = make_lake(tmp_path)
    first = write(lake, [1, 2, 3])
    second = write(lake, [4])
    path = lake.partition_path(KEY, HOURLY, HOUR)
    assert path == tmp_path / "raw" / "t" / "date=2026-01-02" / "hour=0500+0000"
    assert current(lake) == [4]
    # a Delta table: its log beside the partitions, nothing of the old version store
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]
    assert sorted(p.name for p in (tmp_path / "raw" / "t").iterdir()) == [
        "_delta_log",
        "date=2026-01-02",
    ]
    # the replaced version is read by time travel, any reader's
    old = DeltaTable(str(tmp_path / "raw" / "t"), version=first).to_pyarrow_table()
    assert old.column("x").to_pylist() == [1, 2, 3]
    new = DeltaTable(str(tmp_path / "raw" / "t"), version=second).to_pyarrow_table()
    assert new.column("x").to_pylist() == [4]
    # its files stay in the partition's directory (a glob there reads both versions)
    assert len(list(path.glob("*.parquet"))) == 2


def test_vacuum_removes_old_unpinned_versions_only(tmp_path):
    lake = make_lake(tmp_path)
    versions = [write(lake, values) for values in ([1], [2], [3])]
    table = "raw/t"
    # within the retention, nothing goes
    [young] = vacuum_tables(tmp_path, [table], {table: [versions[0]]}, timedelta(days=30))
    assert young.removed == [] and young.kept_versions == [versions[0]]
    [done] = vacuum_tables(tmp_path, [table], {table: [versions[0]]}, timedelta(0))
    assert len(done.removed) == 1 and done.freed_bytes > 0
    pinned = DeltaTable(str(tmp_path / table), version=versions[0]).to_pyarrow_table()
    assert pinned.column("x").to_pylist() == [1]
    assert current(lake) == [3]
    path = lake.partition_path(KEY, HOURLY, HOUR)
    assert len(list(path.glob("*.parquet"))) == 2  # the pinned version's and the current one


def test_concurrent_writers_never_show_readers_a_partial_partition(tmp_path):
    import threading

    lake = make_lake(tmp_path)
    sizes = [100, 2_000, 30_000, 400]
    write(lake, list(range(sizes[0])))
    seen: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def writer(n: int) -> None:
        try:
            # at least 5 writes each, and on until the reader has read often enough (on a
            # busy machine the reader may be scheduled rarely)
            for count in range(500):
                if count >= 5 and len(seen) > 30:
                    break
                write(lake, list(range(n)))
        except BaseException as error:  # noqa: BLE001 (reported below)
            errors.append(error)

    def reader() -> None:
        while not done.is_set():
            try:
                values = current(lake)
            except BaseException as error:  # noqa: BLE001
                errors.append(error)
                continue
            seen.append(len(values))
            if values != list(range(len(values))):
                errors.append(AssertionError(f"mixed or partial read of {len(values)}"))

    threads = [threading.Thread(target=writer, args=(n,)) for n in sizes]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    watcher.join()
    assert errors == []
    assert len(seen) > 10 and set(seen) <= set(sizes)
    assert len(current(lake)) in sizes
    assert not (tmp_path / "_staging").exists()


def test_failed_write_keeps_the_previous_partition(tmp_path):
    lake = make_lake(tmp_path)
    write(lake, [1, 2, 3])
    with pytest.raises(RuntimeError), Staging(lake.root_path).directory() as staged:
        pq.write_table(pa.table({"x": [9]}), staged / part_file_name())
        raise RuntimeError("crash half-way")
    assert current(lake) == [1, 2, 3]
    assert not (tmp_path / "_staging").exists()


@pytest.mark.parametrize("key", ["2026-01-01/../../x", "2026-01-02-24:00", "../etc", "2026-01-02"])
def test_only_real_partition_keys_become_paths(tmp_path, key):
    with pytest.raises(ValueError, match="is not a partition"):
        make_lake(tmp_path).partition_path(KEY, HOURLY, key)


@pytest.mark.parametrize(("zone", "table"), [("../etc", "t"), ("raw", "../t"), ("raw", "T x")])
def test_table_locations_are_validated(zone, table):
    with pytest.raises(ValueError):
        lake_table(zone, table)


def test_an_asset_without_a_lake_table_has_no_path(tmp_path):
    with pytest.raises(KeyError, match="raw/other has no lake table"):
        make_lake(tmp_path).table_dir(dg.AssetKey(["raw", "other"]))


def test_fall_back_hours_get_a_directory_each():
    """The two 01:00 hours of 2026-11-01 in New York are two partitions, two directories."""
    hourly = build_partitions("2026-10-01", "America/New_York").hourly
    window = build_partitions("2026-10-01", "America/New_York").daily.time_window_for_partition_key(
        "2026-11-01"
    )
    keys = hourly.get_partition_keys_in_time_window(window)
    paths = [partition_subpath(hourly, key) for key in keys]
    assert len(keys) == len(set(paths)) == 25
    assert paths[1:3] == ["date=2026-11-01/hour=0100-0400", "date=2026-11-01/hour=0100-0500"]
    assert keys[1:3] == ["2026-11-01-01:00", "2026-11-01-01:00-0500"]


def test_upstream_partitions_come_from_the_declared_mapping_and_a_missing_one_is_named(tmp_path):
    """A daily asset over an hourly one reads the hours Dagster's mapping gives for its day
    (23 on a spring-forward day), and stops naming the first hour that is not in the lake."""
    partitions = build_partitions("2026-03-01", "America/New_York")
    seen: dict[str, list[str]] = {}

    @dg.asset(key=["raw", "t"], partitions_def=partitions.hourly, metadata=lake_table("raw", "t"))
    def hourly(context, lake: LakeResource):
        with lake.writing(context, KEY, context.partition_key) as staged:
            pq.write_table(pa.table({"x": [1]}), staged / part_file_name())

    @dg.asset(
        key=["curated", "d"],
        deps=[KEY],
        partitions_def=partitions.daily,
        metadata=lake_table("curated", "d"),
    )
    def daily(context, lake: LakeResource):
        seen[context.partition_key] = list(lake.input_files(context, KEY))

    lake = LakeResource(root=str(tmp_path), tables=lake_tables([hourly, daily]))
    with dg.instance_for_test() as instance:

        def run(asset: dg.AssetsDefinition, partition_key: str) -> None:
            dg.materialize(
                [hourly, daily],
                selection=[asset],
                partition_key=partition_key,
                instance=instance,
                resources={"lake": lake},
            )

        for key in partitions.hours_of_day("2026-03-08")[:-1]:
            run(hourly, key)
        with pytest.raises(
            dg.Failure,
            match=r"curated/d 2026-03-08 needs raw/t "
            r"partition 2026-03-08-23:00, which is not in the lake",
        ) as failure:
            run(daily, "2026-03-08")
        assert isinstance(failure.value.__cause__, MissingPartitionError)
        assert failure.value.allow_retries is False  # waiting would not bring it
        run(hourly, "2026-03-08-23:00")
        run(daily, "2026-03-08")
    assert len(seen["2026-03-08"]) == 23 and "2026-03-08-02:00" not in seen["2026-03-08"]


def test_staging_left_by_a_dead_writer_is_swept_once_abandoned(tmp_path):
    lake = make_lake(tmp_path, abandoned_staging_seconds=3600)
    dead, recent = tmp_path / "_staging" / "dead", tmp_path / "_staging" / "recent"
    for directory in (dead, recent):
        (directory / "date=2026-01-02").mkdir(parents=True)
        (directory / "date=2026-01-02" / "part-x.parquet").write_bytes(b"half a file")
    two_hours_ago = time.time() - 7200
    os.utime(dead, (two_hours_ago, two_hours_ago))
    with Staging(lake.root_path, abandoned_seconds=3600).directory():
        pass
    assert sorted(p.name for p in (tmp_path / "_staging").iterdir()) == ["recent"]


def test_a_lake_of_the_release_before_delta_is_refused_then_converted(tmp_path):
    """A lake with the old version store: every read or write through the lake layer fails
    saying how to go on; converted, its current partitions are version 0 of Delta tables."""
    old = tmp_path / "raw" / "t" / "date=2026-01-02" / "hour=0500+0000"
    old.mkdir(parents=True)
    pq.write_table(pa.table({"x": [7, 8]}), old / "part-old.parquet")
    (tmp_path / "_versions" / "raw" / "t").mkdir(parents=True)
    lake = make_lake(tmp_path)
    with pytest.raises(LegacyLakeError, match="shopsmart-lake convert.*make clean"):
        lake.partition_files(KEY, HOURLY, [HOUR])
    assert legacy_marks(tmp_path) == ["_versions"]
    assert convert_legacy_lake(tmp_path, {"raw/t": ("date", "hour")}) == ["raw/t"]
    assert legacy_marks(tmp_path) == []
    assert current(lake) == [7, 8]
    assert DeltaTable(str(tmp_path / "raw" / "t")).version() == 0
    write(lake, [9])
    assert current(lake) == [9]
