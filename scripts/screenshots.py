"""`make screenshots`: pictures of the Dagster UI after `make demo`, for the docs.

Starts `dagster dev` on the demo's DAGSTER_HOME (a free port on 127.0.0.1), backfills the whole
chain for the demo's last day through the UI's GraphQL mutation (so that there is a completed
backfill to show; skipped when one is already there), and takes screenshots with headless
Chromium (Debian's `chromium`, through Playwright) of: the asset graph, `lake/purchases` with
its partitions, the model's metadata and plots, and the backfill. Writes small PNGs (a 256-
colour palette) to --out.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

from PIL import Image
from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shopsmart_assets.cli import backfill  # noqa: E402
from shopsmart_assets.cli.devserver import dagster_dev, graphql  # noqa: E402
from shopsmart_assets.partitions import build_partitions  # noqa: E402
from shopsmart_assets_tests.browser import browser_page  # noqa: E402

COMPLETED_BACKFILLS = """
{ partitionBackfillsOrError(status: COMPLETED_SUCCESS, limit: 1) {
    ... on PartitionBackfills { results { id } } } }
"""


@dataclass(frozen=True)
class Shot:
    name: str
    path: str  # below the UI's URL
    ready: str  # text on the page once it has loaded what we show
    prepare: Callable[[Page], None] | None = None


def newest_day() -> str:
    """The demo's last day: the newest daily partition that has ended."""
    key = build_partitions().previous_day_key(datetime.now(timezone.utc))
    if key is None:
        raise SystemExit("screenshots: no daily partition has ended yet; run `make demo` first")
    return key


def completed_backfill(url: str, day: str) -> str:
    found = graphql(url, COMPLETED_BACKFILLS)["partitionBackfillsOrError"].get("results") or []
    if found:
        return found[0]["id"]
    backfill_id = backfill.launch(url, date.fromisoformat(day), date.fromisoformat(day))
    print(f"screenshots: backfilling {day} for the picture ({url}/runs/b/{backfill_id})")
    state = backfill.wait(url, backfill_id, timeout=1800)
    if not backfill.succeeded(state):
        raise SystemExit(f"screenshots: the backfill of {day} did not succeed: {state}")
    return backfill_id


def expand_all_groups(page: Page) -> None:
    """The graph's "Expand all groups" (Alt+E), once the collapsed groups are drawn."""
    page.get_by_text("ml", exact=True).last.wait_for(state="visible")
    page.wait_for_timeout(1000)
    page.keyboard.press("Alt+e")
    page.get_by_text("purchase_model", exact=True).first.wait_for(state="visible")


def show_plots(page: Page) -> None:
    plots = page.get_by_role("button", name="Plots")
    plots.click()
    page.get_by_text("Metadata").first.scroll_into_view_if_needed()


def shots(day: str, backfill_id: str) -> list[Shot]:
    return [
        Shot("asset-graph", "/asset-groups", "Global asset lineage", expand_all_groups),
        Shot(
            "purchases-partitions",
            f"/assets/lake/purchases?view=partitions&partition={day}",
            "dagster/row_count",
        ),
        Shot("model-metadata", "/assets/ml/purchase_model?view=events", "auc"),
        Shot("model-plots", "/assets/ml/purchase_model?view=overview", "auc", show_plots),
        Shot("backfill", f"/runs/b/{backfill_id}", "Succeeded"),
    ]


def take(page: Page, url: str, shot: Shot, out: Path) -> Path:
    page.goto(url + shot.path)
    page.get_by_text(shot.ready).first.wait_for(state="visible", timeout=60_000)
    if shot.prepare:
        shot.prepare(page)
    page.wait_for_timeout(1500)  # let charts and the graph's layout settle
    target = out / f"{shot.name}.png"
    page.screenshot(path=str(target))
    small = Image.open(target).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(target, optimize=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="screenshots", description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    home = Path(os.environ.get("DAGSTER_HOME") or ROOT / ".dagster_home").resolve()
    if not (home / "history").exists() and not any(home.glob("*.db")):
        raise SystemExit(f"screenshots: no Dagster history in {home}; run `make demo` first")
    out.mkdir(parents=True, exist_ok=True)
    day = newest_day()
    with dagster_dev(home, log=home / "screenshots-dagster.log") as url:
        backfill_id = completed_backfill(url, day)
        with browser_page() as page:
            for shot in shots(day, backfill_id):
                path = take(page, url, shot, out)
                print(f"screenshots: {path} ({path.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
