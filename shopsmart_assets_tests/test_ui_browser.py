"""The UI's partition backfill launcher, driven in a headless Chromium as a user would, on a
real `dagster dev` (webserver + daemon) with its own DAGSTER_HOME and data dir:

1. two days of demo sources (yesterday and the day before, so that the freshness check has
   something to be fresh about); their hourly orders extracted with `dagster asset
   materialize`, as the daily chain needs them;
2. on the page of `daily_chain_job`: "Materialize all…", the two days typed into the launch
   dialog's partition range input, "Launch backfill";
3. the backfill completes, every run succeeds, and nobody is paged on Slack;
4. the lake reconciles with the sources (reconcile.py: valid + quarantined = source lines);
5. the asset page of `lake/purchases` shows the row counts and the checks' results that the
   sources imply, read from the page's text and compared with numbers computed by SQLite from
   the sources before the backfill ran.
The Spark steps run through the test run's Spark Connect server, as in test_end_to_end.py.
Screenshots of every step land in the test's tmp_path (named in the failure messages).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest
from playwright.sync_api import Locator, Page, expect

from shopsmart_assets.cli.backfill import status as backfill_status
from shopsmart_assets.cli.backfill import succeeded
from shopsmart_assets.cli.backfill import wait as backfill_wait
from shopsmart_assets.cli.devserver import INSTANCE_CONFIG, dagster_dev, graphql, is_up
from shopsmart_assets.definitions import build_definitions
from shopsmart_assets.defs.lake.assets import PURCHASES_KEY, RECONCILES
from shopsmart_assets.demo.slack_stand_in import SlackServer
from shopsmart_assets_tests import reconcile
from shopsmart_assets_tests.browser import ChromiumNotFound, browser_page, chromium_path
from shopsmart_assets_tests.harness import DAILY, HOURLY, UTC_PARTITIONS, generate_sources
from shopsmart_assets_tests.spark_services import SparkService, materialize, platform_env

pytestmark = [pytest.mark.spark, pytest.mark.e2e, pytest.mark.spark_services, pytest.mark.ui]

TOKEN = "xoxb-ui-browser-0123456789"
ORDERS_PER_DAY = 200
BACKFILL_TIMEOUT = 480  # seconds; the two days take 2–3 minutes, daemon ticks included
UI_TIMEOUT_MS = 30_000  # for an element to appear, on a busy 2-core machine

SOURCE_LINES_SQL = (
    "SELECT count(*) FROM order_items WHERE order_id IN "
    "(SELECT order_id FROM orders WHERE ordered_at >= :lo AND ordered_at < :hi)"
)
BACKFILL = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { id status partitionNames assetSelection { path } }
    ... on PythonError { message }
  }
}
"""
RUN_FAILURES = """
query Failures($id: ID!) {
  runOrError(runId: $id) {
    __typename
    ... on Run {
      status
      eventConnection {
        events {
          __typename
          ... on ExecutionStepFailureEvent { stepKey error { message } }
          ... on RunFailureEvent { message }
        }
      }
    }
  }
}
"""


@dataclass(frozen=True)
class Expected:
    """What the sources imply for one day, by SQLite alone (the rules of docs/lake.md as
    reconcile.py restates them), computed before anything runs."""

    source_lines: int
    valid: int
    hours: int

    @property
    def quarantined(self) -> int:
        return self.source_lines - self.valid


def expected_from_sources(sources: Path, day: date) -> Expected:
    db = reconcile.sources(sources / "crm.db", sources / "orders.db")
    try:
        window = reconcile.window(day)
        [(lines,)] = db.execute(SOURCE_LINES_SQL, window).fetchall()
        [(valid, _usd)] = db.execute(reconcile.EXPECTED_VALID_SQL, window).fetchall()
    finally:
        db.close()
    span = datetime.fromisoformat(window["hi"]) - datetime.fromisoformat(window["lo"])
    return Expected(source_lines=lines, valid=valid, hours=int(span.total_seconds() // 3600))


def checks_of(key: dg.AssetKey) -> list[str]:
    """The names of the asset checks the definitions give an asset."""
    defs = build_definitions(UTC_PARTITIONS)
    # from the definitions' own lists: resolving the repository would need a Dagster
    # instance in this process
    keys = [k for a in defs.assets or [] for k in a.check_keys]
    keys += [k for c in defs.asset_checks or [] for k in c.check_keys]
    return sorted(k.name for k in keys if k.asset_key == key)


def number(text: str) -> int:
    """A count as the UI prints it ("1,019")."""
    digits = text.strip().replace(",", "")
    assert digits.isdigit(), f"not a count: {text!r}"
    return int(digits)


class Screenshots:
    """Numbered full-page screenshots of the main steps, in the test's tmp_path."""

    def __init__(self, page: Page, directory: Path) -> None:
        self.page, self.directory, self.taken = page, directory, 0
        self.last: Path | None = None

    def take(self, name: str) -> Path:
        self.taken += 1
        path = self.directory / f"{self.taken:02d}-{name}.png"
        self.page.screenshot(path=path, full_page=True)
        self.last = path
        return path

    @property
    def where(self) -> str:
        return f"(screenshots in {self.directory}; last: {self.last})"

    @contextmanager
    def on_failure(self) -> Iterator[None]:
        """Any failure in the block leaves a screenshot of the page as it was."""
        try:
            yield
        except BaseException:
            with suppress(Exception):
                print(f"page at the failure: {self.take('failure')} ({self.page.url})")
            raise


def metadata_value(page: Page, label: str) -> str:
    """The value cell of a metadata table row whose key cell is exactly `label`."""
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name=label, exact=True))
    expect(row).to_have_count(1)
    return row.get_by_role("cell").last.inner_text()


def labelled(page: Page, label: str) -> Locator:
    """The block of the asset overview's status bar headed by `label` ("Row count", ...)."""
    return page.get_by_text(label, exact=True).locator("xpath=..")


def launch_backfill_in_ui(page: Page, shots: Screenshots, url: str, first: date, last: date):
    """The user's way: the job's page, "Materialize all…", the range typed into the launch
    dialog, "Launch backfill"; returns the backfill's id from the UI's confirmation toast."""
    page.goto(f"{url}/locations/shopsmart/jobs/daily_chain_job")
    # the button's accessible name starts with its icon's ("materialization Materialize all…")
    materialize_all = page.get_by_role("button", name=re.compile(r"\bMaterialize all…$"))
    expect(materialize_all).to_be_enabled()
    shots.take("job-page")
    materialize_all.click()

    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"Launch runs to materialize {len(DAILY)} assets")
    # the partition keys' text input, the dialog's only one (its placeholder varies: "No
    # matching partitions" while nothing is selected in the last 90 days, else an example)
    keys = dialog.get_by_role("textbox")
    expect(keys).to_have_count(1)
    keys.fill(f"[{first}...{last}]")
    keys.press("Enter")
    expect(keys).to_have_value(f"[{first}...{last}]")
    days = (last - first).days + 1
    expect(dialog.get_by_text(f"{days} partitions", exact=True)).to_be_visible()
    shots.take("launch-dialog")

    launch = dialog.get_by_role("button", name="Launch backfill", exact=True)
    expect(launch).to_be_enabled()
    launch.click()
    toast = page.get_by_text(re.compile(r"^Created backfill \w+$"))
    expect(toast).to_be_visible()
    backfill_id = toast.inner_text().split()[-1]
    # the toast's link to the backfill's page, while the toast lasts (a few seconds)
    page.get_by_role("link", name="View", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/{backfill_id}\b"))
    shots.take("backfill-page")
    return backfill_id


def failures(url: str, state: dict) -> str:
    """The backfill's state and, for each run that did not succeed, its step failures."""
    lines = [f"backfill {state.get('id')}: {state.get('status')}"]
    for run in state.get("runs") or []:
        lines.append(f"run {run['runId']}: {run['status']}")
        if run["status"] == "SUCCESS":
            continue
        found = graphql(url, RUN_FAILURES, {"id": run["runId"]})["runOrError"]
        for event in (found.get("eventConnection") or {}).get("events", []):
            if event["__typename"] == "ExecutionStepFailureEvent":
                lines.append(f"  {event['stepKey']}: {event['error']['message'][:1500]}")
            elif event["__typename"] == "RunFailureEvent":
                lines.append(f"  run failure: {event['message'][:500]}")
    return "\n".join(lines)


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Prints how long a step of the test took (pytest -s shows it)."""
    started = time.monotonic()
    yield
    print(f"ui-browser: {name} in {time.monotonic() - started:.0f}s", flush=True)


def test_ui_partition_backfill_launcher_backfills_two_days(
    tmp_path: Path, spark_connect: SparkService
):
    try:
        chromium_path()  # before anything slow: without a browser there is no test
    except ChromiumNotFound as missing:
        pytest.fail(str(missing), pytrace=False)
    today = datetime.now(timezone.utc).date()
    day1, day2 = today - timedelta(days=2), today - timedelta(days=1)
    days = [str(day1), str(day2)]
    data, home = tmp_path / "data", tmp_path / "home"
    sources = data / "sources"
    generate_sources(sources, days=2, orders_per_day=ORDERS_PER_DAY, start=day1)
    expected = {day: expected_from_sources(sources, day) for day in (day1, day2)}
    assert all(e.valid > 0 and e.quarantined > 0 for e in expected.values()), expected
    both = expected.values()
    purchases_checks = checks_of(PURCHASES_KEY)
    assert RECONCILES in purchases_checks

    # 1. the hourly orders of both days, as users extract them
    env = platform_env(data, home, SHOPSMART_SPARK_REMOTE=spark_connect.url)
    env["SHOPSMART_START_DATE"] = str(day1)
    home.mkdir()
    (home / "dagster.yaml").write_bytes(INSTANCE_CONFIG.read_bytes())
    with phase("hourly orders extracted"):
        materialize(env, tmp_path, HOURLY, f"{day1}-00:00...{day2}-23:00")

    shots_dir = tmp_path / "screenshots"
    shots_dir.mkdir()
    started = time.monotonic()
    with (
        SlackServer(TOKEN) as slack,
        dagster_dev(
            home,
            env={
                **env,
                "SLACK_BOT_TOKEN": TOKEN,
                "SHOPSMART_SLACK_API_URL": slack.url,
                "SHOPSMART_SLACK_CHANNEL": "#ui-browser",
            },
        ) as url,
        browser_page(timeout_ms=UI_TIMEOUT_MS) as page,
    ):
        print(f"ui-browser: dagster dev and Chromium up in {time.monotonic() - started:.0f}s")
        expect.set_options(timeout=UI_TIMEOUT_MS)
        shots = Screenshots(page, shots_dir)
        with shots.on_failure():
            # 2. the backfill, launched from the UI
            with phase("backfill launched in the UI"):
                backfill_id = launch_backfill_in_ui(page, shots, url, day1, day2)
            launched = graphql(url, BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
            assert launched["__typename"] == "PartitionBackfill", launched
            assert launched["partitionNames"] == days, launched

            # 3. it completes and every run succeeds; its page says so. Meanwhile the browser
            # leaves the page: open, it polls the webserver and redraws every few seconds, CPU
            # that the backfill's own runs need on a busy 2-core machine.
            backfill_page = page.url
            page.goto("about:blank")
            with phase("backfill completed"):
                try:
                    state = backfill_wait(url, backfill_id, timeout=BACKFILL_TIMEOUT, poll=2)
                except TimeoutError as timeout:
                    state = backfill_status(url, backfill_id)
                    raise AssertionError(f"{timeout}\n{failures(url, state)}") from None
            page.goto(backfill_page)
            status = labelled(page, "Status")
            expect(status).to_be_visible()
            shots.take("backfill-done")
            assert succeeded(state), f"{failures(url, state)}\n{shots.where}"
            expect(status).to_contain_text("Succeeded")
            job_row = page.get_by_role("row").filter(
                has=page.get_by_role("link", name="daily_chain_job", exact=True)
            )
            # partitions targeted, in progress, succeeded, failed
            n = str(len(days))
            expect(job_row.get_by_role("cell")).to_have_text(
                [re.compile(r"100% completed"), n, "0", n, "0"]
            )
            assert slack.messages == [], [m.get("text") for m in slack.messages]

            # 4. the lake reconciles with the sources
            for day, numbers in expected.items():
                lines = reconcile.assert_lake_reconciles(
                    data / "lake", sources / "crm.db", sources / "orders.db", day
                )
                assert lines == numbers.source_lines, (day, lines, numbers)

            # 5. lake/purchases as the UI shows it: the latest materialization (day 2) ...
            with phase("lake/purchases read in the UI"):
                page.goto(f"{url}/assets/lake/purchases")
                latest = labelled(page, "Latest materialization")
                expect(latest.get_by_role("link", name=str(day2), exact=True)).to_be_visible()
                row_count = labelled(page, "Row count")
                expect(row_count).to_contain_text(re.compile(r"\d"))
                shots.take("purchases-overview")
                shown = {
                    "row count": number(row_count.inner_text().removeprefix("Row count")),
                    **{
                        label: number(metadata_value(page, label))
                        for label in ("source_rows", "quarantined_rows")
                    },
                    "quarantined_share": float(metadata_value(page, "quarantined_share")),
                }
                page.get_by_role(
                    "cell", name="quarantined_share", exact=True
                ).scroll_into_view_if_needed()
                shots.take("purchases-metadata")
                assert shown == {
                    # the latest materialization is day 2's: its own rows ...
                    "row count": expected[day2].valid,
                    "source_rows": expected[day2].source_lines,
                    "quarantined_rows": expected[day2].quarantined,
                    # (the run's totals over both days are one JSON entry, run_totals)
                    "quarantined_share": pytest.approx(
                        expected[day2].quarantined / expected[day2].source_lines, abs=5e-5
                    ),
                }, f"{expected}\n{shots.where}"

                # ... and its checks: every one succeeded, the reconciliation on these numbers
                page.get_by_role("tab", name="Checks", exact=True).click()
                expect(page.get_by_text(f"Checks ({len(purchases_checks)})")).to_be_visible()
                statuses = {}
                for name in purchases_checks:
                    # the list item: the check's name (its full name in a title) and status
                    item = page.locator("span").filter(has=page.get_by_title(name, exact=True))
                    expect(item).to_contain_text(re.compile(r"\w$"))
                    statuses[name] = item.inner_text().split()[-1]
                shots.take("purchases-checks")
                assert statuses == dict.fromkeys(purchases_checks, "Succeeded"), (
                    f"{statuses}\n{shots.where}"
                )
                page.get_by_title(RECONCILES, exact=True).click()
                expect(page).to_have_url(re.compile(rf"checkDetail={RECONCILES}"))
                # the detail's heading: the check's name in full
                heading = page.get_by_text(RECONCILES, exact=True).filter(visible=True)
                expect(heading).to_be_visible()
                expect(page.get_by_text("Passed", exact=True)).to_be_visible()
                check = {
                    label: number(metadata_value(page, label))
                    for label in (
                        "source_rows",
                        "valid_rows",
                        "quarantined_rows",
                        "source_hours_checked",
                    )
                }
                shots.take("reconciliation-check")
                assert check == {
                    "source_rows": sum(e.source_lines for e in both),
                    "valid_rows": sum(e.valid for e in both),
                    "quarantined_rows": sum(e.quarantined for e in both),
                    "source_hours_checked": sum(e.hours for e in both),
                }, f"{expected}\n{shots.where}"
    assert not is_up(url)  # dagster dev and its process group are gone
