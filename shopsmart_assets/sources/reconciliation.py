"""Reconciliation of the raw zone with the source databases, hour by hour.

The raw zone holds what extraction landed; the source holds the truth. Before a day of orders
is published, every hourly partition of the day is counted again in the source (the very
query the extraction runs, without its ordering, wrapped in `count(*)`, for the same UTC
window) and compared with the rows in the raw partition's Parquet footers. An hour that never
reached the lake, was overwritten, or gained rows since it was extracted makes the day fail
its check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import dagster as dg
import sqlalchemy as sa

from shopsmart_assets.lake.metadata import PartitionData, count_rows
from shopsmart_assets.sources.extract import Extraction, count_source_rows, window_params


@dataclass(frozen=True)
class HourCount:
    table: str
    partition_key: str
    source_rows: int
    raw_rows: int

    @property
    def matches(self) -> bool:
        return self.source_rows == self.raw_rows


def count_hours(
    engine: sa.Engine,
    extraction: Extraction,
    windows: Mapping[str, dg.TimeWindow],
    raw_files: Mapping[str, PartitionData],
) -> list[HourCount]:
    """Source and raw rows of each hourly partition (same keys in `windows` and
    `raw_files`)."""
    with engine.connect() as connection:
        return [
            HourCount(
                extraction.raw_table,
                key,
                count_source_rows(
                    connection, extraction, window_params(windows[key].start, windows[key].end)
                ),
                count_rows(raw_files[key]),
            )
            for key in windows
        ]


def describe_mismatches(counts: list[HourCount], limit: int = 6) -> str:
    """'raw/orders 2026-11-01-01:00-0500: source 14, lake 0; …' for the hours that differ."""
    wrong = [c for c in counts if not c.matches]
    shown = "; ".join(
        f"raw/{c.table} {c.partition_key}: source {c.source_rows:,}, lake {c.raw_rows:,}"
        for c in wrong[:limit]
    )
    return shown + (f"; and {len(wrong) - limit} more" if len(wrong) > limit else "")
