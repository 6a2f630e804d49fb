"""Lake tables as Delta tables (lake/delta.py), on real delta-rs tables: partitions replaced
exactly, time travel, the platform's record in each commit, and concurrent writers that lose
or double nothing."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from shopsmart_assets.lake.delta import (
    DeltaLakeTable,
    commit_info,
    delta_schema,
    partition_values,
)


def staged_file(directory: Path, rows: int, tag: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{tag}-{rows}.parquet"
    table = pa.table(
        {
            "n": pa.array(range(rows), pa.int64()),
            "tag": pa.array([tag] * rows, pa.string()),
            "at": pa.array([0] * rows, pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(table, path)
    return path


def rows_by_partition(path: Path, *columns: str) -> dict[tuple, list[str]]:
    """Each partition's tags, read through the Delta table as any reader would."""
    table = DeltaTable(str(path)).to_pyarrow_table()
    found: dict[tuple, list[str]] = {}
    for row in table.to_pylist():
        found.setdefault(tuple(row[c] for c in columns), []).append(row["tag"])
    return {k: sorted(v) for k, v in sorted(found.items())}


def test_partition_values_and_schema():
    assert partition_values("date=2026-01-02/hour=0100+0000") == {
        "date": "2026-01-02",
        "hour": "0100+0000",
    }
    with pytest.raises(ValueError, match="not a Hive partition path"):
        partition_values("2026-01-02")
    schema = delta_schema(pa.schema([("at", pa.timestamp("ns")), ("date", pa.int32())]), ["date"])
    assert schema == pa.schema([("at", pa.timestamp("us", tz="UTC")), ("date", pa.string())])


def test_a_commit_replaces_exactly_the_partitions_written(tmp_path: Path):
    table = DeltaLakeTable(tmp_path / "t", ("date",), "curated/t")
    staging = tmp_path / "staging"
    first = table.commit(
        {
            "date=2026-01-01": [staged_file(staging / "a", 3, "a")],
            "date=2026-01-02": [staged_file(staging / "b", 2, "a")],
        },
        {"run_id": "r1"},
    )
    assert first.version == 0 and first.rows == {"date=2026-01-01": 3, "date=2026-01-02": 2}
    # day 2 again, with fewer rows, and day 3 new; day 1 untouched
    second = table.commit(
        {
            "date=2026-01-02": [staged_file(staging / "c", 1, "b")],
            "date=2026-01-03": [staged_file(staging / "d", 0, "b")],  # a day without rows
        },
        {"run_id": "r2"},
    )
    assert second.version == 1
    assert rows_by_partition(table.path, "date") == {
        ("2026-01-01",): ["a"] * 3,
        ("2026-01-02",): ["b"],
    }
    assert sorted(table.files()) == ["date=2026-01-01", "date=2026-01-02", "date=2026-01-03"]
    # the staged files moved into the table; the version before still reads its own files
    assert not list(staging.rglob("*.parquet"))
    assert DeltaTable(str(table.path), version=0).to_pyarrow_table().num_rows == 5
    history = DeltaTable(str(table.path)).history()
    assert [commit_info(h).get("run_id") for h in history] == ["r2", "r1"]


def test_hourly_partitions_over_several_dates_replace_only_those_hours(tmp_path: Path):
    table = DeltaLakeTable(tmp_path / "h", ("date", "hour"))
    staging = tmp_path / "staging"
    hours = [("2026-01-01", "0000+0000"), ("2026-01-01", "0100+0000"), ("2026-01-02", "0000+0000")]
    table.commit(
        {f"date={d}/hour={h}": [staged_file(staging / f"{d}{h}", 1, "old")] for d, h in hours}
    )
    # 01:00 of day 1 and 00:00 of day 2: their cross product would also take 00:00 of day 1
    table.commit(
        {
            "date=2026-01-01/hour=0100+0000": [staged_file(staging / "x", 2, "new")],
            "date=2026-01-02/hour=0000+0000": [staged_file(staging / "y", 2, "new")],
        }
    )
    assert rows_by_partition(table.path, "date", "hour") == {
        ("2026-01-01", "0000+0000"): ["old"],
        ("2026-01-01", "0100+0000"): ["new", "new"],
        ("2026-01-02", "0000+0000"): ["new", "new"],
    }


def test_a_file_of_another_table_layout_is_refused(tmp_path: Path):
    table = DeltaLakeTable(tmp_path / "t", ("date",))
    staged = staged_file(tmp_path / "s", 1, "a")
    with pytest.raises(ValueError, match="not a partition of this table"):
        table.commit({"date=2026-01-01/hour=0000+0000": [staged]})
    assert not table.exists()


def _writer(args: tuple[str, str, str, int]) -> int:
    root, staging, tag, rounds = args
    table = DeltaLakeTable(Path(root), ("date",))
    for n in range(rounds):
        days = {
            f"date=2026-01-0{d}": [staged_file(Path(staging) / f"{tag}{n}{d}", 2, tag)]
            for d in (1, 2, 3)
        }
        table.commit(days, {"writer": tag})
    return rounds


def test_concurrent_writers_of_the_same_days_lose_and_double_nothing(tmp_path: Path):
    """Four processes replace the same three days over and over: every commit lands (one
    winner per version, the others committed again on top), and each day ends with exactly
    one writer's rows."""
    writers, rounds = 4, 5
    args = [(str(tmp_path / "t"), str(tmp_path / f"s{i}"), f"w{i}", rounds) for i in range(writers)]
    with multiprocessing.get_context("spawn").Pool(writers) as pool:
        done = pool.map(_writer, args)
        # the workers end on their own (the context's terminate() once hung, in a suite run,
        # on a worker blocked on the pool's queue lock)
        pool.close()
        pool.join()
    assert done == [rounds] * writers
    table = DeltaLakeTable(tmp_path / "t")
    assert table.version() == writers * rounds - 1
    for day, tags in rows_by_partition(table.path, "date").items():
        assert len(tags) == 2 and len(set(tags)) == 1, (day, tags)
    # no file is left that no version references
    referenced = {
        f
        for version in range(writers * rounds)
        for files in table.files(version).values()
        for f in files
    }
    on_disk = {str(p.relative_to(table.path)) for p in table.path.rglob("*.parquet")}
    assert on_disk == referenced


def test_vacuum_keeps_pinned_versions_and_young_orphans(tmp_path: Path):
    """Vacuum at retention 0 deletes every replaced file but those of a pinned version (which
    stays readable, by time travel); a file no version references goes only once old (it may
    be a commit under way)."""
    import os
    import time

    table = DeltaLakeTable(tmp_path / "t")
    for n in range(4):
        table.commit({"date=2026-01-01": [staged_file(tmp_path / f"s{n}", n + 1, f"v{n}")]})
    young = table.path / "date=2026-01-01" / "part-young.parquet"
    old = table.path / "date=2026-01-01" / "part-old.parquet"
    for orphan in (young, old):
        pq.write_table(pa.table({"n": [1]}), orphan)
    a_month_ago = time.time() - 30 * 86_400
    os.utime(old, (a_month_ago, a_month_ago))

    planned = table.vacuum(0, keep_versions=[1], dry_run=True)
    assert all((table.path / f).exists() for f in planned)
    removed = table.vacuum(0, keep_versions=[1])
    assert removed == planned
    assert young.exists() and not old.exists()
    assert DeltaTable(str(table.path), version=1).to_pyarrow_table().column("tag").to_pylist() == [
        "v1",
        "v1",
    ]
    assert DeltaTable(str(table.path)).to_pyarrow_table().num_rows == 4
    on_disk = {str(p.relative_to(table.path)) for p in table.path.rglob("part-*.parquet")}
    expected = {f for v in (1, 3) for files in table.files(v).values() for f in files}
    assert on_disk == expected | {str(young.relative_to(table.path))}
