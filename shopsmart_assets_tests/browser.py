"""A headless Chromium driven by Playwright, for the browser tests and `make screenshots`.

It is the system's Chromium (Debian's `chromium` package, found or installed by
scripts/ensure-chromium.sh, or $SHOPSMART_CHROMIUM): Playwright never downloads a browser here.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

# Where scripts/ensure-chromium.sh looks, in its order. /usr/bin/chromium is Debian's shell
# wrapper around /usr/lib/chromium/chromium, the real binary, which Playwright needs.
CANDIDATES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser")
MISSING = (
    "No Chromium found for the browser tests (looked at $SHOPSMART_CHROMIUM, "
    "/usr/lib/chromium/chromium and chromium on PATH). Run `make chromium` "
    "(scripts/ensure-chromium.sh installs Debian's chromium) or set SHOPSMART_CHROMIUM "
    "to a Chromium binary."
)


class ChromiumNotFound(RuntimeError):
    pass


def chromium_path() -> str:
    """The Chromium binary to drive; raises ChromiumNotFound (saying to run `make chromium`)."""
    chosen = os.environ.get("SHOPSMART_CHROMIUM")
    for candidate in ([chosen] if chosen else []) + list(CANDIDATES):
        found = candidate if os.sep in candidate else shutil.which(candidate)
        if found and Path(found).is_file() and os.access(found, os.X_OK):
            return found
    raise ChromiumNotFound(MISSING)


@contextmanager
def browser_page(
    viewport: tuple[int, int] = (1500, 950), timeout_ms: float = 30_000
) -> Iterator[Page]:
    """A fresh page of a headless system Chromium, with `viewport` (width, height) and
    `timeout_ms` as its default wait; the browser is closed on exit."""
    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            # containers and CI run as root, where Chromium's sandbox cannot start
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
            page = context.new_page()
            page.set_default_timeout(timeout_ms)
            yield page
        finally:
            browser.close()
