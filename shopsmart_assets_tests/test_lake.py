"""The lake: atomic, idempotent partition writes and safe paths."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shopsmart_assets.resources import LakeResource

DAY = date(2026, 1, 2)


def write(lake: LakeResource, values: list[int]) -> None:
    with lake.writing_partition("raw", "t", DAY, 5) as staged:
        pq.write_table(pa.table({"x": values}), staged / "part-0.parquet")


def test_rewrite_replaces_and_leaves_no_debris(tmp_path):
    lake = LakeResource(root=str(tmp_path))
    write(lake, [1, 2, 3])
    write(lake, [4])
    path = lake.partition_dir("raw", "t", DAY, 5)
    assert path == tmp_path / "raw" / "t" / "date=2026-01-02" / "hour=05"
    assert pq.read_table(path).column("x").to_pylist() == [4]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_trash", "raw"]
    assert not any((tmp_path / "_trash").iterdir())


def test_failed_write_keeps_the_previous_partition(tmp_path):
    lake = LakeResource(root=str(tmp_path))
    write(lake, [1, 2, 3])
    with pytest.raises(RuntimeError), lake.writing_partition("raw", "t", DAY, 5) as staged:
        pq.write_table(pa.table({"x": [9]}), staged / "part-0.parquet")
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
