"""The README's first command seen in a browser: `make dev` from an empty instance to a champion.

Runs `make dev` as a user does (free ports, its instance and lake under ``tmp_path``) and uses
Dagster's UI in Debian's chromium: the code location lists every asset group; the platform
bootstraps itself with no click (ingestion, a first baseline and training set, then automation
trains, evaluates, releases and promotes) and ``production_model`` shows the first champion;
``evaluation_report`` shows the gate's verdict; a click on Materialize runs an asset to success.
The minutes of the bootstrap are waited out on GraphQL (cheap, with progress printed); everything
the test asserts is read in the page. A failure keeps the page's screenshot, URL and HTML
(``support/browser.py``).
"""

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect
from support.dev_server import DevServer, running_make
from support.servers import wait_for

pytest_plugins = ["support.browser"]
pytestmark = pytest.mark.e2e

STARTUP_SECONDS = 120
# From make's start to the first champion: 75 simulated days ingested (a run each, two at a
# time), a baseline, a training set, then a training, evaluation, release and promotion. Measured
# 14 min on two cores, 19 with other tests loading them (load 13-20); three quarters ingestion.
CHAMPION_SECONDS = 40 * 60
POLL_SECONDS = 10
# A page's content: the UI's queries take seconds while the bootstrap loads both cores.
PAGE_MS = 60_000
# A clicked run may queue behind the two runs automation is allowed at a time.
RUN_MS = 10 * 60_000

ASSET_GROUPS = (
    "ingestion",
    "baselines",
    "features",
    "training",
    "evaluation",
    "deployment",
    "monitoring",
    "llm",
)
# What the bootstrap materializes on its way to a champion, in order: the progress printed.
TO_A_CHAMPION = (
    "training_set",
    "candidate_model",
    "evaluation_report",
    "canary_release",
    "canary_analysis",
    "production_model",
)
# Quick, unpartitioned, with no upstream asset: a click runs it at once.
CLICKED_ASSET = "prompt_registry"

PROGRESS = """query($keys: [AssetKeyInput!]) {
  assetNodes(assetKeys: $keys) { assetKey { path } assetMaterializations(limit: 1) { runId } }
  succeeded: runsOrError(filter: {statuses: [SUCCESS]}) { ... on Runs { count } }
  failed: runsOrError(filter: {statuses: [FAILURE]}) {
    ... on Runs { results { runId assetSelection { path } } } }
}"""


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[DevServer]:
    """`make dev`; requested before ``page``, so a failure's screenshot shows it still running."""
    with running_make(tmp_path) as server:
        yield server


# The whole story in one test, as one user's first session: the bootstrap takes minutes, and
# every step after the first needs the champion it ends with.
@pytest.mark.timeout(STARTUP_SECONDS + CHAMPION_SECONDS + RUN_MS // 1000 + 5 * 60)
def test_a_new_user_sees_make_dev_reach_a_champion_in_the_ui(
    dev_server: DevServer, page: Page
) -> None:
    started = time.monotonic()
    wait_for("the Dagster webserver", STARTUP_SECONDS, dev_server.is_up)

    # The code location's definitions list its assets by group, each with its count.
    page.goto(f"{dev_server.url}/locations/flywheel/assets")
    # An empty instance greets its first visitor with Dagster's community dialog, which covers
    # the page until skipped (then never shown again on this instance).
    page.get_by_role("button", name="Skip", exact=True).click(timeout=PAGE_MS)
    for group in ASSET_GROUPS:
        expect(page.get_by_text(group, exact=True)).to_be_visible(timeout=PAGE_MS)

    page.goto(f"{dev_server.url}/runs")  # what a failure's screenshot shows while waiting
    champion_run = _wait_for_the_first_champion(dev_server, started)
    page.goto(f"{dev_server.url}/assets/production_model")
    expect(_metadata_value(page, "champion_version")).to_have_text("1", timeout=PAGE_MS)
    first = "none: this is the first champion"
    expect(_metadata_value(page, "rollback")).to_have_text(first, timeout=PAGE_MS)
    page.get_by_role("tab", name="Events").click(timeout=PAGE_MS)
    expect(page.get_by_text("Materialized in run")).to_be_visible(timeout=PAGE_MS)
    run_link = page.get_by_role("link", name=champion_run[:8], exact=True)
    expect(run_link).to_be_visible(timeout=PAGE_MS)

    page.goto(f"{dev_server.url}/assets/evaluation_report")
    expect(_metadata_value(page, "verdict")).to_have_text("passed", timeout=PAGE_MS)

    page.goto(f"{dev_server.url}/assets/{CLICKED_ASSET}")
    page.get_by_role("button", name=re.compile(r"Materialize$")).click(timeout=PAGE_MS)
    toast = page.get_by_text(re.compile(r"^Launched run [0-9a-f]{8}$"))
    expect(toast).to_be_visible(timeout=PAGE_MS)
    run_id = toast.inner_text().split()[-1]
    # The toast's link to the run it launched.
    page.get_by_role("link", name="View", exact=True).click(timeout=PAGE_MS)
    expect(page).to_have_url(re.compile(f"/runs/{run_id}"), timeout=PAGE_MS)
    finished = page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$"))
    expect(finished).to_be_visible(timeout=RUN_MS)
    expect(finished).to_have_text("Success", timeout=PAGE_MS)


def _wait_for_the_first_champion(server: DevServer, started: float) -> str:
    """The run that first materialized ``production_model``; progress is printed meanwhile."""
    keys = [{"path": [name]} for name in TO_A_CHAMPION]
    while True:
        state = server.graphql(PROGRESS, {"keys": keys})
        latest = {
            node["assetKey"]["path"][0]: node["assetMaterializations"]
            for node in state["assetNodes"]
        }
        failed = [_selection(run) for run in state["failed"]["results"]]
        elapsed = time.monotonic() - started
        done = [name for name in TO_A_CHAMPION if latest[name]]
        print(  # noqa: T201
            f"{elapsed:5.0f} s: {state['succeeded']['count']} runs succeeded"
            f"{f', failed: {failed}' if failed else ''}; "
            f"materialized: {', '.join(done) or 'nothing yet'}",
            flush=True,
        )
        if champion := latest["production_model"]:
            return champion[0]["runId"]
        assert server.process.poll() is None, f"make dev exited:\n{server.log.read_text()}"
        assert elapsed < CHAMPION_SECONDS, f"no champion within {CHAMPION_SECONDS} s: {state}"
        time.sleep(POLL_SECONDS)


def _selection(run: dict[str, Any]) -> str:
    assets = ",".join(key["path"][-1] for key in run["assetSelection"] or [])
    return f"{run['runId'][:8]} ({assets or 'a job'})"


def _metadata_value(page: Page, key: str) -> Locator:
    """The value of ``key`` in an asset's metadata table: the last cell of the key's row."""
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name=key, exact=True))
    return row.get_by_role("cell").last
