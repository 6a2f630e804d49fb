#!/usr/bin/env bash
# make demo: generate the demo sources, materialize the whole chain for them through Dagster
# (recorded in $DAGSTER_HOME, so `make ui` shows the history) and print a summary.
# Safe to run again: the sources are regenerated identically and every lake partition is
# replaced, never appended to.
set -euo pipefail

: "${SHOPSMART_DATA_DIR:?}" "${DAGSTER_HOME:?}"
BIN=${BIN:-.venv/bin}
DAYS=${DEMO_DAYS:-14}
ORDERS_PER_DAY=${DEMO_ORDERS_PER_DAY:-500}
LOGS="$SHOPSMART_DATA_DIR/logs"
mkdir -p "$LOGS" "$DAGSTER_HOME"
cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"

# DEMO_DAYS days ending yesterday (DEMO_END=YYYY-MM-DD to pin it) in SHOPSMART_TIMEZONE. The
# partitions start on the first demo day, recorded with the data (partitions.json) the first
# time, so that a later `make demo` adds the days since, and the UI has no empty partition.
read -r START END < <("$BIN/shopsmart-demo" --plan --days "$DAYS" --end-date "${DEMO_END:-yesterday}")
# The sources also get today's hours that have ended, and the hourly extracts take them: the
# demo is as of now, every partition of every asset green.
"$BIN/shopsmart-demo" --reset --start-date "$START" --end-date "$END" --until-now \
  --orders-per-day "$ORDERS_PER_DAY"

materialize() {  # name, selection, partition range
  local log="$LOGS/$1.log" started=$SECONDS
  printf '%-44s' "materializing $1 ($3)..."
  if "$BIN/dagster" asset materialize -m shopsmart_assets.definitions \
      --select "$2" --partition-range "$3" >"$log" 2>&1; then
    echo " done in $((SECONDS - started))s"
  else
    echo " FAILED (full log: $log)"
    grep -E "ERROR|Error|error:" "$log" | head -20
    exit 1
  fi
}

# The chain's assets and partition ranges come from the definitions: the hourly extracts over
# every hour of those days (23 or 25 on DST days), then the daily chain, each in one run.
ranges=$("$BIN/shopsmart-backfill" --from "$START" --to "$END" --hours-until-now --print-ranges)
names=(hourly-orders daily-chain)
step=0
while read -r selection range; do
  materialize "${names[$step]:-chain-$step}" "$selection" "$range"
  step=$((step + 1))
done <<< "$ranges"

"$BIN/shopsmart-summary" --start "$START" --end "$END"
