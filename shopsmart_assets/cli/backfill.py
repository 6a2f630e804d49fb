"""`shopsmart-backfill`: backfill the whole chain for a date range with one command.

Launches a real Dagster asset backfill, the same one the UI's partition backfill launcher
creates (GraphQL `launchPartitionBackfill`): the hourly orders of every day in the range,
then the daily chain, each asset's range in a single run. It is recorded in the instance and
shows under Overview → Backfills. Talks to the Dagster at --url; if none answers there, it
starts `dagster dev` for the duration of the backfill.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any

from shopsmart_assets import settings
from shopsmart_assets.cli.devserver import dagster_dev, graphql, is_up

if TYPE_CHECKING:
    from shopsmart_assets.partitions import Partitions

DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { invalidOutputName }
    ... on UnauthorizedError { message }
    ... on PartitionSetNotFoundError { message }
    ... on ConflictingExecutionParamsError { message }
    ... on NoModeProvidedError { message }
    ... on InvalidSubsetError { message }
  }
}
"""
STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { id status numPartitions runs(limit: 100) { runId status } }
    ... on PythonError { message }
  }
}
"""


def chain_ranges(
    first: date, last: date, hours_until: datetime | None = None
) -> list[tuple[list[str], str, str]]:
    """The whole chain over the days first..last as (asset keys, first partition, last
    partition), one entry per partitions definition, upstream first: the hourly extracts over
    the hours of those days (DST days included; with `hours_until`, on through the last hour
    that ended by then), then the daily assets over the days. The assets and partitions come
    from the definitions."""
    from shopsmart_assets.definitions import load_code_location

    location = load_code_location()
    partitions, graph = location.partitions, location.graph
    hours = partitions.hours_of_day(first.isoformat()), partitions.hours_of_day(last.isoformat())
    last_hour = hours[1][-1]
    if hours_until is not None:
        ended = partitions.previous_hour_key(hours_until)
        if ended is not None and _hour_start(partitions, ended) > _hour_start(
            partitions, last_hour
        ):
            last_hour = ended
    return [
        (
            [k.to_user_string() for k in graph.partitioned_by(partitions.hourly)],
            hours[0][0],
            last_hour,
        ),
        (
            [k.to_user_string() for k in graph.partitioned_by(partitions.daily)],
            str(first),
            str(last),
        ),
    ]


def _hour_start(partitions: Partitions, key: str) -> datetime:
    return partitions.hourly.time_window_for_partition_key(key).start


def backfill_params(first: date, last: date) -> dict[str, Any]:
    """`partitionsByAssets` for the whole chain over first..last."""
    return {
        "title": f"shopsmart {first} .. {last}",
        "partitionsByAssets": [
            {
                "assetKey": {"path": key.split("/")},
                "partitions": {"range": {"start": start, "end": end}},
            }
            for keys, start, end in chain_ranges(first, last)
            for key in keys
        ],
    }


def launch(url: str, first: date, last: date) -> str:
    result = graphql(url, LAUNCH, {"params": backfill_params(first, last)})
    answer = result["launchPartitionBackfill"]
    if answer["__typename"] != "LaunchBackfillSuccess":
        raise RuntimeError(f"backfill refused: {answer}")
    return answer["backfillId"]


def status(url: str, backfill_id: str) -> dict[str, Any]:
    return graphql(url, STATUS, {"id": backfill_id})["partitionBackfillOrError"]


def wait(url: str, backfill_id: str, timeout: float, poll: float = 5) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last_line = ""
    while True:
        state = status(url, backfill_id)
        runs = state.get("runs") or []
        line = f"backfill {backfill_id}: {state['status']}, {len(runs)} runs " + (
            ", ".join(sorted({r["status"].lower() for r in runs}))
        )
        if line != last_line:
            print(line, flush=True)
            last_line = line
        if state["status"] in DONE and not any(
            r["status"] in {"QUEUED", "STARTING", "STARTED", "NOT_STARTED"} for r in runs
        ):
            return state
        if time.monotonic() > deadline:
            raise TimeoutError(f"backfill {backfill_id} still {state['status']} after {timeout}s")
        time.sleep(poll)


def succeeded(state: dict[str, Any]) -> bool:
    runs = state.get("runs") or []
    return state["status"] in {"COMPLETED", "COMPLETED_SUCCESS"} and all(
        r["status"] == "SUCCESS" for r in runs
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shopsmart-backfill",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--from", dest="first", type=date.fromisoformat, required=True)
    parser.add_argument("--to", dest="last", type=date.fromisoformat, required=True)
    parser.add_argument(
        "--url", default=settings.ui_url(), help="the Dagster UI (default $SHOPSMART_UI_URL)"
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="return once launched (only with a Dagster already running)",
    )
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument(
        "--hours-until-now",
        action="store_true",
        help="the hourly range runs on past --to, through the last hour that ended before the "
        "present UTC hour began (what `shopsmart-demo --until-now` generates)",
    )
    parser.add_argument(
        "--print-ranges",
        action="store_true",
        help="print, for `dagster asset materialize`, each group of assets and its partition "
        "range (`SELECTION FIRST...LAST`, one line per group), and launch nothing",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.last < args.first:
        parser.error("--to is before --from")
    if args.print_ranges:
        until = None
        if args.hours_until_now:
            until = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
        for keys, start, end in chain_ranges(args.first, args.last, until):
            print(f"{','.join(keys)} {start}...{end}")
        return 0

    def run(url: str) -> int:
        backfill_id = launch(url, args.first, args.last)
        print(f"launched backfill {backfill_id}: {url}/runs/b/{backfill_id}", flush=True)
        if args.no_wait:
            return 0
        state = wait(url, backfill_id, args.timeout)
        ok = succeeded(state)
        print(
            f"backfill {backfill_id} {'succeeded' if ok else 'did not succeed'}: {state['status']}"
        )
        return 0 if ok else 1

    if is_up(args.url):
        return run(args.url)
    if args.no_wait:
        parser.error(f"no Dagster at {args.url}; start one with `make ui` or drop --no-wait")
    home = settings.dagster_home()
    print(f"no Dagster at {args.url}: starting dagster dev with DAGSTER_HOME={home}", flush=True)
    with dagster_dev(home) as url:
        code = run(url)
    print("(that Dagster has stopped; `make ui` shows the backfill under Overview → Backfills)")
    return code


if __name__ == "__main__":
    sys.exit(main())
