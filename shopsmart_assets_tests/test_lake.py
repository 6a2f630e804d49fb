"""The lake: atomic, idempotent partition writes, and paths derived from the definitions."""

from __future__ import annotations

import dataclasses
import os
import time
from datetime import timedelta

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shopsmart_assets.lake import (
    MissingPartitionError,
    lake_table,
    lake_tables,
    part_file_name,
    partition_subpath,
)
from shopsmart_assets.lake.versions import (
    PartitionVersions,
    collect_garbage,
    describe_content,
    kept_versions,
)
from shopsmart_assets.partitions import build_partitions
from shopsmart_assets.resources import LakeResource

KEY = dg.AssetKey(["raw", "t"])
TABLES = {"raw/t": "raw/t"}
HOURLY = build_partitions("2026-01-01", "UTC").hourly
HOUR = "2026-01-02-05:00"


def make_lake(root, **settings) -> LakeResource:
    return LakeResource(root=str(root), tables=TABLES, **settings)


def write(lake: LakeResource, values: list[int]) -> None:
    with lake.publisher.staging() as staged:
        pq.write_table(pa.table({"x": values}), staged / part_file_name())
        lake.publisher.publish(staged, lake.partition_path(KEY, HOURLY, HOUR))


def test_rewrite_replaces_the_partition_and_keeps_the_old_version(tmp_path):
    lake = make_lake(tmp_path)
    write(lake, [1, 2, 3])
    path = lake.partition_path(KEY, HOURLY, HOUR)
    versions = PartitionVersions.of(tmp_path, path)
    first = versions.current()
    write(lake, [4])
    assert path == tmp_path / "raw" / "t" / "date=2026-01-02" / "hour=0500+0000"
    assert pq.read_table(path).column("x").to_pylist() == [4]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_locks", "_versions", "raw"]
    # the partition holds its data files only; its manifest: a content digest, rows, files
    [data_file] = list(path.iterdir())
    second = versions.current()
    assert second.version != first.version and second.rows == 1 and first.rows == 3
    assert [f["name"] for f in second.files] == [data_file.name]
    assert second.version == describe_content(path)[0]
    # the replaced version is kept whole, out of the table, a plain Parquet read
    kept = versions.kept_dir(first.version)
    assert pq.read_table(kept).column("x").to_pylist() == [1, 2, 3]
    assert versions.manifest(first.version).replaced_at is not None
    assert describe_content(kept)[0] == first.version
    # writing the same content again keeps nothing new: the version is the same
    write(lake, [4])
    assert versions.current().version == second.version
    assert [m.version for _, m in kept_versions(tmp_path)] == [first.version]
    # a partition changed behind the lake's back is not taken for its recorded version
    data_file.write_bytes(b"PAR1 changed")
    assert versions.current().version != second.version


def test_gc_removes_old_unreferenced_versions_only(tmp_path):
    lake = make_lake(tmp_path)
    for values in ([1], [2], [3]):
        write(lake, values)
    kept = [m for _, m in kept_versions(tmp_path)]
    assert len(kept) == 2
    referenced = {(m.table, m.partition, m.version) for m in kept[:1]}
    # within the retention, nothing goes
    young = collect_garbage(tmp_path, referenced, timedelta(days=30))
    assert young.removed == [] and len(young.young) == 1
    collected = collect_garbage(tmp_path, referenced, timedelta(0))
    assert [m.version for m in collected.removed] == [kept[1].version]
    assert collected.freed_bytes == kept[1].bytes > 0
    assert [m.version for _, m in kept_versions(tmp_path)] == [kept[0].version]
    assert pq.read_table(lake.partition_path(KEY, HOURLY, HOUR)).column("x").to_pylist() == [3]


def test_concurrent_writers_never_show_readers_a_partial_partition(tmp_path):
    import threading

    # a short grace period, so that retired versions are really deleted during the test
    lake = make_lake(tmp_path)
    sizes = [100, 2_000, 30_000, 400]
    write(lake, list(range(sizes[0])))
    path = lake.partition_path(KEY, HOURLY, HOUR)
    seen: list[int] = []
    retries: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def writer(n: int) -> None:
        try:
            # at least 15 writes each, and on until the reader has read often enough (on a
            # busy machine the reader may be scheduled rarely)
            for count in range(2_000):
                if count >= 15 and len(seen) > 50:
                    break
                write(lake, list(range(n)))
        except BaseException as error:  # noqa: BLE001 (reported below)
            errors.append(error)

    def reader() -> None:
        while not done.is_set():
            # a careful reader: list the partition, open each file once, and start again if
            # a swap retired the files it listed (a clean "not found", never a mix)
            try:  # the partition itself is never missing
                [name] = [n for n in os.listdir(path) if n.endswith(".parquet")]
            except BaseException as error:  # noqa: BLE001
                errors.append(error)
                continue
            try:
                with open(path / name, "rb") as handle:
                    table = pq.read_table(handle)
            except FileNotFoundError:
                retries.append(1)
                continue
            except BaseException as error:  # noqa: BLE001
                errors.append(error)
                continue
            seen.append(table.num_rows)
            if table.column("x").to_pylist() != list(range(table.num_rows)):
                errors.append(AssertionError(f"mixed or partial read of {table.num_rows}"))

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
    assert len(retries) < len(seen)
    assert pq.read_table(path).num_rows in sizes
    assert not (tmp_path / "_staging").exists()


def test_failed_write_keeps_the_previous_partition(tmp_path):
    lake = make_lake(tmp_path)
    write(lake, [1, 2, 3])
    with pytest.raises(RuntimeError), lake.publisher.staging() as staged:
        pq.write_table(pa.table({"x": [9]}), staged / part_file_name())
        raise RuntimeError("crash half-way")
    path = lake.partition_path(KEY, HOURLY, HOUR)
    assert pq.read_table(path).column("x").to_pylist() == [1, 2, 3]
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
        seen[context.partition_key] = list(lake.input_paths(context, KEY))

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
    write(lake, [1])
    assert sorted(p.name for p in (tmp_path / "_staging").iterdir()) == ["recent"]
    assert pq.read_table(lake.partition_path(KEY, HOURLY, HOUR)).column("x").to_pylist() == [1]


def test_a_directory_a_swap_replaced_stays_readable_for_the_grace_period(tmp_path):
    """The same rows published again: the directory a reader may have just listed is moved out
    of the lake, whole, and deleted only once the grace period is over."""
    lake = make_lake(tmp_path)
    write(lake, [1, 2, 3])
    path = lake.partition_path(KEY, HOURLY, HOUR)
    [listed] = [p.name for p in path.iterdir() if p.suffix == ".parquet"]
    before = os.stat(path).st_ino
    write(lake, [1, 2, 3])  # the same version: nothing to keep in the store
    [retired] = list((tmp_path / "_retired").iterdir())
    assert os.stat(retired).st_ino == before
    assert pq.read_table(retired / listed).column("x").to_pylist() == [1, 2, 3]
    swept = dataclasses.replace(lake.publisher, retired_grace_seconds=0)
    with swept.staging():
        pass
    assert list((tmp_path / "_retired").iterdir()) == []
