"""`make bench`: speed and memory of the platform's heavy paths, against targets.

One day of demo data at a production-like volume (BENCH_ORDERS_PER_DAY, default 100,000
orders), then, each in a fresh process so that peak memory is its own:
  1. extraction of the day's orders and order lines into the raw zone (streamed in chunks);
  2. `lake/purchases` on Spark for the day, through `dagster asset materialize`.
Prints a table, writes bench-results/<timestamp>.json, and exits 1 when a target is missed.
Targets: extraction ≥ 20,000 rows/s with peak memory under 1 GiB, whatever the volume (it
streams); lake/purchases ≥ 5,000 order lines/s for the whole command, Spark start included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.dataset as ds

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DAY = "2026-01-01"
TARGETS = {
    "extract_rows_per_s": 20_000,
    "extract_peak_mib": 1024,
    "purchases_lines_per_s": 5_000,
}

EXTRACT = """
import json, resource, sys, time
from pathlib import Path
import sqlalchemy as sa
from shopsmart_assets.extract import ORDER_ITEMS, ORDERS, extract_to_parquet, window_params
from shopsmart_assets.partitions import build_partitions
data = Path(sys.argv[1])
engine = sa.create_engine(f"sqlite:///{data / 'sources' / 'orders.db'}")
window = build_partitions().daily.time_window_for_partition_key(sys.argv[2])
started, rows = time.perf_counter(), 0
for extraction in (ORDERS, ORDER_ITEMS):
    out = data / f"{extraction.raw_table}.parquet"
    rows += extract_to_parquet(engine, extraction, window_params(window.start, window.end), out,
                               partition_key=sys.argv[2]).rows
seconds = time.perf_counter() - started
peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rows": rows, "seconds": seconds, "peak_mib": peak_mib}))
"""


def run(command: list[str], env: dict[str, str]) -> tuple[str, float]:
    """Run a command to completion; its stdout and wall seconds."""
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        output = done.stdout[-2000:] + done.stderr[-2000:]
        sys.exit(f"bench: {' '.join(command[:4])} failed:\n{output}")
    return done.stdout, seconds


def main() -> int:
    orders_per_day = int(os.environ.get("BENCH_ORDERS_PER_DAY", "100000"))
    results: dict[str, float] = {"orders_per_day": orders_per_day}
    with tempfile.TemporaryDirectory(prefix="shopsmart-bench-") as tmp:
        data, home = Path(tmp) / "data", Path(tmp) / "home"
        home.mkdir()
        (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
        env = {
            **os.environ,
            "SHOPSMART_DATA_DIR": str(data),
            "DAGSTER_HOME": str(home),
            "SHOPSMART_TIMEZONE": "UTC",
            "SHOPSMART_START_DATE": DAY,
            "SPARK_LOCAL_IP": "127.0.0.1",
        }
        generate = [str(BIN / "shopsmart-demo"), "--start-date", DAY, "--days", "1"]
        _, seconds = run([*generate, "--orders-per-day", str(orders_per_day)], env)
        results["generate_s"] = round(seconds, 1)

        out, _ = run([sys.executable, "-c", EXTRACT, str(data), DAY], env)
        extract = json.loads(out.strip().splitlines()[-1])
        results["extract_rows"] = extract["rows"]
        results["extract_rows_per_s"] = round(extract["rows"] / extract["seconds"])
        results["extract_peak_mib"] = round(extract["peak_mib"])

        dagster = str(BIN / "dagster")
        materialize = [dagster, "asset", "materialize", "-m", "shopsmart_assets.definitions"]
        hours = f"{DAY}-00:00...{DAY}-23:00"
        run(
            [*materialize, "--select", "raw/orders,raw/order_items", "--partition-range", hours],
            env,
        )
        run([*materialize, "--select", "raw/crm_customers", "--partition", DAY], env)
        _, seconds = run([*materialize, "--select", "lake/purchases", "--partition", DAY], env)
        items = data / "lake" / "raw" / "order_items"
        lines = ds.dataset(str(items), format="parquet", partitioning="hive").count_rows()
        results["purchases_lines"] = lines
        results["purchases_s"] = round(seconds, 1)
        results["purchases_lines_per_s"] = round(lines / seconds)

    missed = [
        name
        for name, target in TARGETS.items()
        if (results[name] > target if name.endswith("_mib") else results[name] < target)
    ]
    print(f"ShopSmart bench, {orders_per_day:,} orders in one day")
    for name, value in results.items():
        target = TARGETS.get(name)
        shown = f"{value:,}" if isinstance(value, int) else f"{value}"
        bound = "≤" if name.endswith("_mib") else "≥"
        goal = "" if target is None else f"  (target {bound} {target:,})"
        print(f"  {name:24} {shown:>12}{goal}{'  MISSED' if name in missed else ''}")
    out_dir = ROOT / "bench-results"
    out_dir.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (out_dir / f"{stamp}.json").write_text(json.dumps({**results, "targets": TARGETS}, indent=2))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
