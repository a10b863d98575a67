"""A browser for UI tests: Debian's chromium driven by Playwright, and what a failure leaves.

A test module loads this with ``pytest_plugins = ["support.browser"]`` and takes ``page``. The
browser is the system's ``/usr/bin/chromium``: Playwright's own downloaded browsers are never
installed. When the test fails, the page as it was is kept for a person to look at: a
screenshot, its URL and its HTML, in ``$FLYWHEEL_TEST_ARTIFACTS/<test>/`` (CI sets it to the
folder it uploads) or else ``.flywheel/test-artifacts/<test>/`` (git-ignored), and the failure
output names the folder.
"""

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, ViewportSize, sync_playwright

from resources.environments import PROJECT_ROOT

CHROMIUM = "/usr/bin/chromium"
# A common laptop screen: what the UI must be usable at.
VIEWPORT = ViewportSize(width=1366, height=768)
ARTIFACTS_VARIABLE = "FLYWHEEL_TEST_ARTIFACTS"


@pytest.fixture
def page(request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh 1366x768 page in a new chromium; if the test fails, its artifacts are kept."""
    with sync_playwright() as playwright:
        # As root in a container chromium's sandbox cannot start.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport=VIEWPORT)
            yield page
            # Set by tests/conftest.py's pytest_runtest_makereport once the test has run.
            report = getattr(request.node, "rep_call", None)
            if report is not None and report.failed:
                keep_artifacts(page, artifacts_folder(request.node.name))
        finally:
            browser.close()


def artifacts_folder(test_name: str) -> Path:
    """Where a failed test's artifacts go: one folder per test, named so any OS can hold it."""
    root = os.environ.get(ARTIFACTS_VARIABLE) or PROJECT_ROOT / ".flywheel" / "test-artifacts"
    return Path(root) / re.sub(r"[^\w.-]+", "_", test_name)


def keep_artifacts(page: Page, folder: Path) -> None:
    """Save the page's screenshot, URL and HTML into ``folder`` (emptied first) and say where."""
    shutil.rmtree(folder, ignore_errors=True)  # a previous failure's files would mislead
    folder.mkdir(parents=True)
    (folder / "url.txt").write_text(page.url + "\n")
    (folder / "page.html").write_text(page.content())
    page.screenshot(path=folder / "screenshot.png", full_page=True)
    # Captured teardown output: pytest prints it under the failed test's report.
    print(f"browser artifacts of the failed test: {folder}")  # noqa: T201
