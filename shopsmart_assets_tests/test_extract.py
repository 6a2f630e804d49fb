"""Extraction: windows by bound parameters, chunking, and schema drift errors."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from shopsmart_assets.cli.demo import main as demo_main
from shopsmart_assets.sources.extract import (
    CRM_CUSTOMERS,
    DRIFT_MIN_ROWS,
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
    ).rows
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
    ).rows
    assert rows == 0
    assert pq.read_table(tmp_path / "e.parquet").schema == ORDERS.schema


@pytest.mark.parametrize(
    ("ddl", "column", "words"),
    [
        ("ALTER TABLE customers DROP COLUMN segment", "segment", "missing"),
        ("ALTER TABLE customers RENAME COLUMN email TO email_address", "email", "missing"),
        # retyped: most values no longer read
        ("UPDATE customers SET signup_at = '1 week ago'", "signup_at", "does not hold"),
        ("UPDATE customers SET customer_id = 'C-' || customer_id", "customer_id", "does not hold"),
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


@pytest.mark.parametrize(
    ("column", "stored", "expected_text"),
    [
        ("unit_price", "'abc'", "abc"),
        ("quantity", "'12 pcs'", "12 pcs"),
        ("quantity", "2.5", "2.5"),
        ("quantity", "100000000000000000000", "1e+20"),  # beyond 64 bits: SQLite keeps a REAL
        ("product_id", "'P-17'", "P-17"),
    ],
)
def test_one_unreadable_value_is_kept_as_text_and_the_rest_lands(
    sources, tmp_path, column, stored, expected_text
):
    _, orders = sources
    with orders.begin() as c:
        [(order_id, line_no)] = c.execute(
            sa.text(
                "SELECT i.order_id, i.line_no FROM order_items i JOIN orders o USING (order_id) "
                "WHERE o.ordered_at >= '2026-01-01 10:00:00' AND o.ordered_at < "
                "'2026-01-01 11:00:00' ORDER BY 1, 2 LIMIT 1"
            )
        ).all()
        c.execute(
            sa.text(
                f"UPDATE order_items SET {column} = {stored} WHERE order_id = :o AND line_no = :l"
            ),
            {"o": order_id, "l": line_no},
        )
        [(source_rows,)] = c.execute(
            sa.text(
                "SELECT count(*) FROM order_items WHERE order_id IN (SELECT order_id FROM orders "
                "WHERE ordered_at >= '2026-01-01 10:00:00' AND ordered_at < '2026-01-01 11:00:00')"
            )
        ).all()
    report = extract_to_parquet(
        orders, ORDER_ITEMS, window_params(START, END), tmp_path / "i.parquet", "2026-01-01-10:00"
    )
    table = pq.read_table(tmp_path / "i.parquet").to_pylist()
    assert report.rows == len(table) == source_rows  # nothing lost
    assert dict(report.unparsed) == {column: 1}
    [bad] = [r for r in table if r["unparsed_values"] is not None]
    assert (bad["order_id"], bad["line_no"]) == (order_id, line_no)
    assert bad[column] is None
    assert json.loads(bad["unparsed_values"]) == {column: expected_text}


def test_a_column_is_drifted_only_when_most_rows_do_not_read(sources, tmp_path):
    """Fewer than DRIFT_MIN_ROWS bad values are dirty rows, not drift, even when they are the
    whole partition: it lands, every value kept as text."""
    crm, _ = sources
    keep = DRIFT_MIN_ROWS - 1
    with crm.begin() as c:
        c.execute(sa.text(f"DELETE FROM customers WHERE customer_id > {keep}"))
        c.execute(sa.text("UPDATE customers SET updated_at = 'soon'"))
    report = extract_to_parquet(
        crm, CRM_CUSTOMERS, window_params(START, END), tmp_path / "c.parquet", "2026-01-01"
    )
    assert report.rows == keep and dict(report.unparsed) == {"updated_at": keep}


def test_window_bounds_reach_the_database_as_bound_parameters(sources, tmp_path):
    """What the database receives: the statement text never holds a window bound (no value is
    formatted into SQL), each bound arrives as a parameter, and the rows are those of the
    window, so a value can never change the query."""
    crm, orders = sources
    sent: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        sent.append((statement, parameters))

    for engine, extraction in ((crm, CRM_CUSTOMERS), (orders, ORDERS), (orders, ORDER_ITEMS)):
        sent.clear()
        sa.event.listen(engine, "before_cursor_execute", record)
        try:
            extract_to_parquet(
                engine, extraction, window_params(START, END), tmp_path / "x.parquet", "k"
            )
        finally:
            sa.event.remove(engine, "before_cursor_execute", record)
        queries = [(s, p) for s, p in sent if s.lstrip().upper().startswith("SELECT")]
        assert queries, extraction.raw_table
        for statement, _ in queries:
            for bound in ("2026-01-01", "10:00", "11:00"):
                assert bound not in statement, (extraction.raw_table, statement)
        bound_values = [v for _, p in queries for v in (p or ()) if isinstance(v, str)]
        assert any(v.startswith("2026-01-01 11:00:00") for v in bound_values), bound_values
