"""Feast's DuckDB offline store, reading the lake's Delta tables through delta-rs.

Feast's own DuckDB offline store reads a `DeltaFormat` file source with DuckDB's `delta`
extension, which DuckDB downloads on first use (not possible offline, as on this project's
machines). This store is the same store with one change: a Delta source is read with delta-rs
(the table's current version, as every reader of the lake reads it); every other source as
Feast reads it. Configured as `offline_store: {type: <this module>.DeltaDuckDBOfflineStore}`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from feast.data_format import DeltaFormat
from feast.infra.offline_stores import duckdb as feast_duckdb
from feast.infra.offline_stores.ibis import (
    get_historical_features_ibis,
    pull_all_from_table_or_query_ibis,
    pull_latest_from_table_or_query_ibis,
)

from shopsmart_assets.feature_repo import DELTA_OFFLINE_STORE


class DeltaDuckDBOfflineStoreConfig(feast_duckdb.DuckDBOfflineStoreConfig):
    type: str = DELTA_OFFLINE_STORE


def read_source(data_source: Any, repo_path: str) -> Any:
    """A Delta file source's current version as an ibis table (delta-rs); any other source
    as Feast's DuckDB offline store reads it."""
    file_format = getattr(data_source, "file_format", None)
    if not isinstance(file_format, DeltaFormat):
        return feast_duckdb._read_data_source(data_source, repo_path)
    import ibis

    from shopsmart_assets.lake.delta import arrow_dataset

    return ibis.memtable(arrow_dataset(data_source.path).to_table())


def _with_reader(arguments: dict[str, Any]) -> dict[str, Any]:
    """A call's own arguments, with this store's reader and Feast's writer and staging."""
    config = arguments["config"]
    return {
        **arguments,
        "data_source_reader": read_source,
        "data_source_writer": feast_duckdb._write_data_source,
        "staging_location": config.offline_store.staging_location,
        "staging_location_endpoint_override": (
            config.offline_store.staging_location_endpoint_override
        ),
    }


class DeltaDuckDBOfflineStore(feast_duckdb.DuckDBOfflineStore):
    """Feast's DuckDB offline store, reading Delta sources with delta-rs."""

    @staticmethod
    def pull_latest_from_table_or_query(
        config, data_source, join_key_columns, feature_name_columns, timestamp_field,
        created_timestamp_column, start_date: datetime, end_date: datetime,
    ):  # fmt: skip
        return pull_latest_from_table_or_query_ibis(**_with_reader(locals()))

    @staticmethod
    def get_historical_features(
        config, feature_views, feature_refs, entity_df, registry, project,
        full_feature_names: bool = False, filter_by_created_timestamp: bool = False,
    ):  # fmt: skip
        return get_historical_features_ibis(**_with_reader(locals()))

    @staticmethod
    def pull_all_from_table_or_query(
        config, data_source, join_key_columns, feature_name_columns, timestamp_field,
        created_timestamp_column=None, start_date=None, end_date=None,
    ):  # fmt: skip
        return pull_all_from_table_or_query_ibis(**_with_reader(locals()))
