"""`shopsmart-summary`: what the lake holds, read with DuckDB the way any user would."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import sqlalchemy as sa

from shopsmart_assets import settings
from shopsmart_assets.assets.ml import CHAMPION_MODEL_KEY, PURCHASE_MODEL_KEY, PURCHASE_SCORES_KEY
from shopsmart_assets.resources.sources import source_engine


def parquet_tables() -> list[tuple[str, str]]:
    """(table, glob) of every Parquet table in the lake, from the definitions: its location
    and how deep its partitions go (`date=…/` or `date=…/hour=…/`)."""
    from shopsmart_assets.definitions import build_assets
    from shopsmart_assets.lineage import Lineage
    from shopsmart_assets.partitions import build_partitions
    from shopsmart_assets.resources.lake import LAKE_TABLE

    partitions = build_partitions()
    lineage = Lineage.of(build_assets(partitions))
    return [
        (location, "*/*/*.parquet" if spec.partitions_def == partitions.hourly else "*/*.parquet")
        for spec in lineage.specs.values()
        if "parquet" in spec.kinds
        for name, location in spec.metadata.items()
        if name == LAKE_TABLE or name.startswith(f"{LAKE_TABLE}#")
    ]


def _scan(lake: Path, table: str, pattern: str, where: str) -> str:
    path = lake / table / pattern
    return f"(SELECT * FROM read_parquet('{path}', hive_partitioning = true) WHERE {where})"


def source_order_lines(orders_url: str, start: date, end: date, tz: str) -> int:
    """Order lines in the orders database for orders placed in [start, end], by plain SQL."""
    zone = ZoneInfo(tz)
    lower = datetime.combine(start, time(), zone).astimezone(timezone.utc).replace(tzinfo=None)
    upper = (
        datetime.combine(end + timedelta(days=1), time(), zone)
        .astimezone(timezone.utc)
        .replace(tzinfo=None)
    )
    query = sa.text(
        "SELECT count(*) FROM order_items WHERE order_id IN (SELECT order_id FROM orders "
        "WHERE ordered_at >= :lower AND ordered_at < :upper)"
    ).bindparams(
        sa.bindparam("lower", type_=sa.DateTime()), sa.bindparam("upper", type_=sa.DateTime())
    )
    with source_engine(orders_url).connect() as connection:
        return connection.execute(query, {"lower": lower, "upper": upper}).scalar_one()


def day_path(key: dg.AssetKey, day: date) -> Path:
    """Where the lake layer keeps a day of a daily asset."""
    from shopsmart_assets.partitions import build_partitions
    from shopsmart_assets.serving import configured

    return configured("lake").partition_path(key, build_partitions().daily, str(day))


def print_serving(day: date) -> None:
    """The registry's champion, the day's scores and one customer as Feast serves them."""
    from shopsmart_assets.serving import configured

    registry = configured("model_registry")
    version = registry.alias_version()
    if version is None:
        print(f"  MLflow registry: {registry.model_name} has no champion yet")
    else:
        run_id = registry.get_client().get_model_version(registry.model_name, str(version)).run_id
        auc = registry.get_client().get_run(run_id).data.metrics.get("auc")
        print(f"  MLflow registry: {registry.model_name}@champion = version {version} (AUC {auc})")
    scores = day_path(PURCHASE_SCORES_KEY, day)
    if not scores.is_dir():
        print(f"  scores {day}: none")
        return
    db = duckdb.connect()
    scored, customer = db.execute(
        f"SELECT count(*), min(customer_id) FROM read_parquet('{scores}/*.parquet')"
    ).fetchone()
    print(f"  scores {day}: {scored:,} customers scored")
    if customer is None:
        return
    [row] = configured("feature_store").online([customer]).to_dict("records")
    shown = {k: v for k, v in sorted(row.items()) if v is not None and v == v}
    print(f"  Feast online, customer {customer}: " + json.dumps(shown, default=str))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shopsmart-summary", description=__doc__)
    parser.add_argument("--start", type=date.fromisoformat, required=True)
    parser.add_argument("--end", type=date.fromisoformat, required=True)
    args = parser.parse_args(argv)
    lake = settings.lake_dir()
    where = f"date BETWEEN DATE '{args.start}' AND DATE '{args.end}'"
    db = duckdb.connect()

    print(f"\nShopSmart lake at {lake}  ({args.start} .. {args.end})")
    counts: dict[str, int] = {}
    for table, pattern in parquet_tables():
        if not (lake / table).is_dir():
            continue
        rows = db.execute(f"SELECT count(*) FROM {_scan(lake, table, pattern, where)}").fetchone()[
            0
        ]
        counts[table] = rows
        print(f"  {table:32s} {rows:>10,} rows")

    reasons = db.execute(
        "SELECT reason, count(*) FROM "
        f"{_scan(lake, 'quarantine/purchases', '*/*.parquet', where)} "
        "GROUP BY reason ORDER BY 2 DESC"
    ).fetchall()
    print(
        "  quarantined order lines by reason: "
        + ", ".join(f"{reason} {n:,}" for reason, n in reasons)
    )

    orders_url = os.environ.get(settings.ORDERS_URL_VAR) or settings.default_orders_url()
    source = source_order_lines(orders_url, args.start, args.end, settings.timezone())
    valid, quarantined = counts["curated/purchases"], counts["quarantine/purchases"]
    landed = valid + quarantined
    verdict = "reconciles" if source == landed else "DOES NOT RECONCILE"
    print(
        f"  source order lines {source:,} = valid {valid:,} + quarantined {quarantined:,}: "
        f"{verdict}"
    )

    champion = day_path(CHAMPION_MODEL_KEY, args.end) / "champion.json"
    candidate = day_path(PURCHASE_MODEL_KEY, args.end) / "metrics.json"
    if candidate.exists():
        metrics = json.loads(candidate.read_text())
        auc = metrics["metrics"].get("auc")
        print(
            f"  model {args.end}: "
            + (
                f"AUC {auc:.3f} on {metrics['metrics']['test_rows']:,} held-out customers, "
                f"MLflow run {metrics['mlflow_run_id']}"
                if auc is not None
                else f"not trained ({metrics['reason']})"
            )
        )
    if champion.exists():
        record = json.loads(champion.read_text())
        print(
            f"  champion as of {args.end}: model of {record['model_partition']} "
            f"(AUC {record['auc']}), {record['decision']}"
        )
    else:
        print("  champion: none (the model did not pass its promotion check)")
    print_serving(args.end)
    print(
        "\nQuery it yourself, e.g. with DuckDB:\n"
        f"  SELECT * FROM read_parquet('{lake}/curated/purchases/*/*.parquet',"
        " hive_partitioning = true) LIMIT 5;\n"
        "Browse runs, assets and partitions: make ui  (http://127.0.0.1:3000)\n"
        "Watch it run itself, with orders arriving live: make ui LIVE=1"
    )
    return 0 if source == landed else 1


if __name__ == "__main__":
    sys.exit(main())
