"""`shopsmart-summary`: what the lake holds, read with DuckDB the way any user would."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

import duckdb

from shopsmart_assets import settings
from shopsmart_assets.cli.serving import initialized_resource
from shopsmart_assets.defs.ml import CHAMPION_MODEL_KEY, PURCHASE_MODEL_KEY, PURCHASE_SCORES_KEY
from shopsmart_assets.defs.ml.records import ChampionRecord, ModelRecord
from shopsmart_assets.lake.delta import DeltaLakeTable, duckdb_view
from shopsmart_assets.partitions import Partitions
from shopsmart_assets.sources.extract import ORDER_ITEMS, count_source_rows, window_params


def view_name(table: str) -> str:
    """The DuckDB view of a lake table: `curated/purchases` → `curated__purchases`."""
    return table.replace("/", "__")


def register_tables(db: duckdb.DuckDBPyConnection, lake: Path, tables: list[str]) -> list[str]:
    """Each Delta table of the lake (`<zone>/<table>`) as a DuckDB view of its current
    version; returns the tables the lake holds."""
    held = []
    for table in tables:
        if DeltaLakeTable(lake / table).exists():
            duckdb_view(db, lake / table, view_name(table))
            held.append(table)
    return held


def source_order_lines(partitions: Partitions, start: date, end: date) -> int:
    """Order lines in the orders database for the orders of the days start..end: the
    extraction's own query, counted over the days' window."""
    first = partitions.daily.time_window_for_partition_key(str(start))
    last = partitions.daily.time_window_for_partition_key(str(end))
    engine = initialized_resource("orders_db").get_engine()
    with engine.connect() as connection:
        return count_source_rows(connection, ORDER_ITEMS, window_params(first.start, last.end))


def print_table_rows(
    db: duckdb.DuckDBPyConnection, tables: list[str], where: str
) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in tables:
        [(rows,)] = db.execute(f"SELECT count(*) FROM {view_name(table)} WHERE {where}").fetchall()
        counts[table] = rows
        print(f"  {table:32s} {rows:>10,} rows")
    reasons = db.execute(
        f"SELECT reason, count(*) FROM {view_name('quarantine/purchases')} WHERE {where} "
        "GROUP BY reason ORDER BY 2 DESC"
    ).fetchall()
    print(
        "  quarantined order lines by reason: "
        + ", ".join(f"{reason} {n:,}" for reason, n in reasons)
    )
    return counts


def print_model(partitions: Partitions, day: date) -> None:
    """The day's model partition and the champion in force that day."""
    lake = initialized_resource("lake")
    models = lake.partition_files(PURCHASE_MODEL_KEY, partitions.daily, [str(day)])
    if str(day) in models:
        model = ModelRecord.read(models[str(day)])
        described = (
            f"AUC {model.auc:.3f} on {model.metrics['test_rows']:,} held-out customers, "
            f"MLflow run {model.mlflow_run_id}"
            if model.auc is not None
            else f"not trained ({model.reason})"
        )
        print(f"  model {day}: {described}")
    champions = lake.partition_files(CHAMPION_MODEL_KEY, partitions.daily, [str(day)])
    if str(day) not in champions:
        print("  champion: none (the model did not pass its promotion check)")
        return
    record = ChampionRecord.read(champions[str(day)])
    champion = record.champion
    print(
        f"  champion as of {day}: model of {champion.model_partition if champion else None} "
        f"(AUC {champion.auc if champion else None}), {record.decision}"
    )


def print_serving(partitions: Partitions, day: date) -> None:
    """The registry's champion, the day's scores and one customer as Feast serves them."""
    registry = initialized_resource("model_registry")
    version = registry.alias_version()
    if version is None:
        print(f"  MLflow registry: {registry.model_name} has no champion yet")
    else:
        run_id = registry.get_client().get_model_version(registry.model_name, str(version)).run_id
        auc = registry.get_client().get_run(run_id).data.metrics.get("auc")
        print(f"  MLflow registry: {registry.model_name}@champion = version {version} (AUC {auc})")
    lake = initialized_resource("lake")
    scores = lake.partition_files(PURCHASE_SCORES_KEY, partitions.daily, [str(day)])
    if str(day) not in scores:
        print(f"  scores {day}: none")
        return
    scored, customer = (
        duckdb.connect()
        .execute(
            "SELECT count(*), min(customer_id) FROM read_parquet(?)",
            [[str(f) for f in scores[str(day)]]],
        )
        .fetchone()
    )
    print(f"  scores {day}: {scored:,} customers scored")
    if customer is None:
        return
    [row] = initialized_resource("feature_store").online([customer]).to_dict("records")
    shown = {k: v for k, v in sorted(row.items()) if v is not None and v == v}
    print(f"  Feast online, customer {customer}: " + json.dumps(shown, default=str))


def main(argv: list[str] | None = None) -> int:
    from shopsmart_assets.definitions import load_code_location
    from shopsmart_assets.lake import lake_tables

    parser = argparse.ArgumentParser(prog="shopsmart-summary", description=__doc__)
    parser.add_argument("--start", type=date.fromisoformat, required=True)
    parser.add_argument("--end", type=date.fromisoformat, required=True)
    args = parser.parse_args(argv)
    location = load_code_location()
    lake = settings.lake_dir()
    # `date` is the partition column, ISO text in the Delta tables
    where = f"date BETWEEN '{args.start}' AND '{args.end}'"

    print(f"\nShopSmart lake at {lake}  ({args.start} .. {args.end})")
    db = duckdb.connect()
    tables = register_tables(db, lake, sorted(set(lake_tables(location.assets).values())))
    counts = print_table_rows(db, tables, where)
    source = source_order_lines(location.partitions, args.start, args.end)
    valid, quarantined = counts["curated/purchases"], counts["quarantine/purchases"]
    landed = valid + quarantined
    verdict = "reconciles" if source == landed else "DOES NOT RECONCILE"
    print(
        f"  source order lines {source:,} = valid {valid:,} + quarantined {quarantined:,}: "
        f"{verdict}"
    )
    print_model(location.partitions, args.end)
    print_serving(location.partitions, args.end)
    print(
        "\nQuery it yourself: every table is a Delta table, e.g. in Python\n"
        f"  deltalake.DeltaTable('{lake}/curated/purchases').to_pandas()\n"
        "  (DuckDB: SELECT * FROM delta_scan('…/curated/purchases') where its delta extension"
        " installs; docs/lake.md)\n"
        "Browse runs, assets and partitions: make ui  (http://127.0.0.1:3000)\n"
        "Watch it run itself, with orders arriving live: make ui LIVE=1"
    )
    return 0 if source == landed else 1


if __name__ == "__main__":
    sys.exit(main())
