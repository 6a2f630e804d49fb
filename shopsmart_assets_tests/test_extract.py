"""Extraction: windows by bound parameters, chunking, and schema drift errors."""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from shopsmart_assets.demo.cli import main as demo_main
from shopsmart_assets.extract import (
    CRM_CUSTOMERS,
    ORDER_ITEMS,
    ORDERS,
    SourceSchemaError,
    extract_to_parquet,
    window_params,
)

START = datetime(2026, 1, 1, 10, tzinfo=timezone.utc)
END = datetime(2026, 1, 1, 11, tzinfo=timezone.utc)


@pytest.fixture
def sources(tmp_path):
    crm, orders = f"sqlite:///{tmp_path / 'crm.db'}", f"sqlite:///{tmp_path / 'orders.db'}"
    demo_main(
        [
            "--crm-url",
            crm,
            "--orders-url",
            orders,
            "--days",
            "1",
            "--orders-per-day",
            "400",
            "--start-date",
            "2026-01-01",
        ]
    )
    return sa.create_engine(crm), sa.create_engine(orders)


def test_extracts_exactly_the_window(sources, tmp_path):
    _, orders = sources
    rows = extract_to_parquet(
        orders, ORDERS, window_params(START, END), tmp_path / "o.parquet", "2026-01-01-10:00"
    )
    with orders.connect() as c:
        expected = c.execute(
            sa.text(
                "SELECT count(*) FROM orders WHERE ordered_at >= '2026-01-01 10:00:00' "
                "AND ordered_at < '2026-01-01 11:00:00'"
            )
        ).scalar()
    table = pq.read_table(tmp_path / "o.parquet")
    assert rows == expected == table.num_rows > 0
    assert table.schema == ORDERS.schema
    ts = table.column("ordered_at").to_pylist()
    assert min(ts) >= START and max(ts) < END


def test_chunked_extraction_equals_one_chunk(sources, tmp_path):
    _, orders = sources
    params = window_params(START, END)
    extract_to_parquet(orders, ORDER_ITEMS, params, tmp_path / "a.parquet", "k", chunk_rows=7)
    extract_to_parquet(orders, ORDER_ITEMS, params, tmp_path / "b.parquet", "k")
    assert pq.read_table(tmp_path / "a.parquet").equals(pq.read_table(tmp_path / "b.parquet"))
    assert pq.ParquetFile(tmp_path / "a.parquet").metadata.num_row_groups > 1


def test_empty_window_still_writes_the_schema(sources, tmp_path):
    _, orders = sources
    later = datetime(2027, 1, 1, tzinfo=timezone.utc)
    rows = extract_to_parquet(
        orders, ORDERS, window_params(later, later), tmp_path / "e.parquet", "2027-01-01-00:00"
    )
    assert rows == 0
    assert pq.read_table(tmp_path / "e.parquet").schema == ORDERS.schema


@pytest.mark.parametrize(
    ("ddl", "column", "words"),
    [
        ("ALTER TABLE customers DROP COLUMN segment", "segment", "missing"),
        ("ALTER TABLE customers RENAME COLUMN email TO email_address", "email", "missing"),
        (
            "UPDATE customers SET signup_at = '2025-02-30 10:00:00' WHERE customer_id = 3",
            "signup_at",
            "does not hold",
        ),
        (
            "UPDATE customers SET customer_id = 'C-17' WHERE customer_id = 5",
            "customer_id",
            "does not hold",
        ),
    ],
)
def test_schema_drift_names_source_table_column_and_partition(
    sources, tmp_path, ddl, column, words
):
    crm, _ = sources
    with crm.begin() as c:
        c.execute(sa.text(ddl))
    destination = tmp_path / "c.parquet"
    with pytest.raises(SourceSchemaError) as error:
        extract_to_parquet(crm, CRM_CUSTOMERS, window_params(START, END), destination, "2026-01-01")
    message = str(error.value)
    for part in ("source 'crm'", "table 'customers'", f"column '{column}'", "2026-01-01", words):
        assert part in message, message


def test_parameters_are_bound_not_formatted():
    for extraction in (CRM_CUSTOMERS, ORDERS, ORDER_ITEMS):
        assert ":end" in extraction.sql and "{" not in extraction.sql
