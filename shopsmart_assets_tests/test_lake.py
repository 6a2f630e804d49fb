"""The lake: atomic, idempotent partition writes and safe paths."""

from __future__ import annotations

import os
import time
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shopsmart_assets.resources import LakeResource
from shopsmart_assets.resources.lake import part_file_name

DAY = date(2026, 1, 2)


def write(lake: LakeResource, values: list[int]) -> None:
    with lake.writing_partition("raw", "t", DAY, 5) as staged:
        pq.write_table(pa.table({"x": values}), staged / part_file_name())


def test_rewrite_replaces_and_retires_the_old_version(tmp_path):
    lake = LakeResource(root=str(tmp_path))
    write(lake, [1, 2, 3])
    write(lake, [4])
    path = lake.partition_dir("raw", "t", DAY, 5)
    assert path == tmp_path / "raw" / "t" / "date=2026-01-02" / "hour=05"
    assert pq.read_table(path).column("x").to_pylist() == [4]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_locks", "_trash", "raw"]
    # the replaced version stays out of the table for reads already under way …
    [retired] = (tmp_path / "_trash").iterdir()
    assert pq.read_table(retired).column("x").to_pylist() == [1, 2, 3]
    # … and is deleted after the grace period
    LakeResource(root=str(tmp_path), retired_grace_seconds=0)._empty_trash()
    assert list((tmp_path / "_trash").iterdir()) == []


def test_concurrent_writers_never_show_readers_a_partial_partition(tmp_path):
    import threading

    # a short grace period, so that retired versions are really deleted during the test
    lake = LakeResource(root=str(tmp_path), retired_grace_seconds=1)
    sizes = [100, 2_000, 30_000, 400]
    write(lake, list(range(sizes[0])))
    path = lake.partition_dir("raw", "t", DAY, 5)
    seen: list[int] = []
    retries: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def writer(n: int) -> None:
        try:
            for _ in range(15):
                write(lake, list(range(n)))
        except BaseException as error:  # noqa: BLE001 (reported below)
            errors.append(error)

    def reader() -> None:
        while not done.is_set():
            # a careful reader: list the partition, open each file once, and start again if
            # a swap retired the files it listed (a clean "not found", never a mix)
            try:
                [name] = os.listdir(path)  # the partition itself is never missing
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
    lake = LakeResource(root=str(tmp_path))
    write(lake, [1, 2, 3])
    with pytest.raises(RuntimeError), lake.writing_partition("raw", "t", DAY, 5) as staged:
        pq.write_table(pa.table({"x": [9]}), staged / part_file_name())
        raise RuntimeError("crash half-way")
    assert pq.read_table(lake.partition_dir("raw", "t", DAY, 5)).column("x").to_pylist() == [
        1,
        2,
        3,
    ]
    assert not (tmp_path / "_staging").exists()


@pytest.mark.parametrize(
    ("zone", "day", "hour"),
    [("../etc", DAY, None), ("raw", "2026-01-01/../../x", None), ("raw", DAY, 24)],
)
def test_partition_paths_are_validated(tmp_path, zone, day, hour):
    with pytest.raises((ValueError, TypeError)):
        LakeResource(root=str(tmp_path)).partition_dir(zone, "t", day, hour)


def test_missing_upstream_partition_is_named(tmp_path):
    lake = LakeResource(root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"raw/orders for 2026-01-02 hour 07"):
        lake.require_partitions("raw", "orders", [(DAY, 7)], "lake/purchases 2026-01-02")


def test_staging_left_by_a_dead_writer_is_swept_once_abandoned(tmp_path):
    lake = LakeResource(root=str(tmp_path), abandoned_staging_seconds=3600)
    dead, recent = tmp_path / "_staging" / "dead", tmp_path / "_staging" / "recent"
    for directory in (dead, recent):
        (directory / "date=2026-01-02").mkdir(parents=True)
        (directory / "date=2026-01-02" / "part-x.parquet").write_bytes(b"half a file")
    two_hours_ago = time.time() - 7200
    os.utime(dead, (two_hours_ago, two_hours_ago))
    write(lake, [1])
    assert sorted(p.name for p in (tmp_path / "_staging").iterdir()) == ["recent"]
    assert pq.read_table(lake.partition_dir("raw", "t", DAY, 5)).column("x").to_pylist() == [1]
