"""`make demo` in a real browser: the platform builds a champion by itself, then plays a story.

Runs `make demo` as a user does (free ports, its instance and lake under ``tmp_path``) with a
short scenario (``tests/scenarios/short.yaml``: a schema change on the second simulated day, a
concept drift from the third, a day and a half of simulated time a real minute) and uses Dagster's
UI in Debian's chromium. `make demo` starts the processes `make dev` starts on an empty instance
of its own, so the first part is `make dev`'s first session; one platform serves both parts
because its bootstrap takes minutes of CI's two cores.

1. The first champion, with no click: the code location lists every asset group; while the
   platform bootstraps (ingestion, a first baseline and training set, then automation trains,
   evaluates, releases and promotes), GraphQL shows the code location with its sensors on (no
   schedule), the ingestion sensor's first runs succeeding with their days in this test's lake,
   the RAG index and the prompts' release built by their sensor and automation, the online store
   loaded with its skew check passing, and the prediction service answering 503 until a champion
   exists. ``production_model`` then shows the first champion in the page, ``evaluation_report``
   the gate's verdict, and a click on Materialize runs an asset to success.
2. The story, with no click: the compressed clock, the sensors, automation and the live traffic
   halt the bad batch, detect the concept drift, request retraining, release the retrained model
   as a canary and promote it, in that order (read from the instance).

The minutes of the bootstrap and the story are waited out on GraphQL and the instance (cheap, with
progress printed). A failure keeps the page's screenshot, URL and HTML (``support/browser.py``).
"""

import contextlib
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetCheckKey, AssetKey, DagsterEventType, DagsterInstance, RunsFilter
from playwright.sync_api import Locator, Page, expect
from support.dev_server import DevServer, running_make
from support.harness import TO_A_CHAMPION
from support.servers import wait_for

from platform_assets.common.keys import MODEL_MONITORING_REPORT, PRODUCTION_MODEL
from resources.environments import PROJECT_ROOT
from resources.llm.environments import PROMPTS
from resources.llm.prompts import PromptRegistry

pytest_plugins = ["support.browser"]
pytestmark = pytest.mark.e2e

SCENARIO = PROJECT_ROOT / "tests" / "scenarios" / "short.yaml"
BAD_DAY = "2026-03-02"
DRIFT_FROM = "2026-03-03"
CANARY_RELEASE = AssetKey("canary_release")
CONTRACT = AssetCheckKey(AssetKey("raw_transactions"), "contract")
STARTUP_SECONDS = 180
# The first runs of the sensors and automation, under way within a minute or two of the start.
FIRST_RUNS_SECONDS = 300
# From make's start to the story's end: 47 days of history ingested (a run each, two at a time),
# a baseline, a training set, a training, evaluation, release and promotion, then about a dozen
# simulated days, a retraining and the canary's soak, on two busy cores.
STORY_SECONDS = 40 * 60
POLL_SECONDS = 10
# A page's content: the UI's queries take seconds while the platform loads both cores.
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
# Quick, unpartitioned, with no upstream asset: a click runs it at once.
CLICKED_ASSET = "prompt_registry"

PROGRESS = """query($keys: [AssetKeyInput!]) {
  assetNodes(assetKeys: $keys) { assetKey { path } assetMaterializations(limit: 1) { runId } }
  succeeded: runsOrError(filter: {statuses: [SUCCESS]}) { ... on Runs { count } }
  failed: runsOrError(filter: {statuses: [FAILURE]}) {
    ... on Runs { results { runId assetSelection { path } } } }
}"""


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[DevServer]:
    """`make demo`; requested before ``page``, so a failure's screenshot shows it still running."""
    with running_make(tmp_path, "demo", f"SCENARIO={SCENARIO}") as server:
        yield server


# One user's first session: every step after the first champion needs it, and the story starts
# when it serves.
@pytest.mark.timeout(STORY_SECONDS + 300)
def test_a_new_user_watches_make_demo_reach_a_champion_and_play_the_story(
    demo_server: DevServer, page: Page
) -> None:
    started = time.monotonic()
    deadline = started + STORY_SECONDS
    wait_for("the Dagster webserver", STARTUP_SECONDS, demo_server.is_up)

    # The code location's definitions list its assets by group, each with its count.
    # (The instance turns Dagster's welcome dialog off: nothing covers the page.)
    page.goto(f"{demo_server.url}/locations/flywheel/assets")
    for group in ASSET_GROUPS:
        expect(page.get_by_text(group, exact=True)).to_be_visible(timeout=PAGE_MS)
    _the_platform_builds_itself(demo_server)

    with _off_the_ui(page, f"{demo_server.url}/runs"):
        champion_run = _wait_for_the_first_champion(demo_server, started, deadline)
    page.goto(f"{demo_server.url}/assets/production_model")
    expect(_metadata_value(page, "champion_version")).to_have_text("1", timeout=PAGE_MS)
    first = "none: this is the first champion"
    expect(_metadata_value(page, "rollback")).to_have_text(first, timeout=PAGE_MS)
    page.get_by_role("tab", name="Events").click(timeout=PAGE_MS)
    expect(page.get_by_text("Materialized in run")).to_be_visible(timeout=PAGE_MS)
    run_link = page.get_by_role("link", name=champion_run[:8], exact=True)
    expect(run_link).to_be_visible(timeout=PAGE_MS)

    page.goto(f"{demo_server.url}/assets/evaluation_report")
    expect(_metadata_value(page, "verdict")).to_have_text("passed", timeout=PAGE_MS)

    page.goto(f"{demo_server.url}/assets/{CLICKED_ASSET}")
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

    with _off_the_ui(page, f"{demo_server.url}/runs"):
        seen = _the_story(demo_server, started, deadline)
    order = sorted(seen, key=seen.__getitem__)
    assert order == [name for name, _ in STORY], seen


@contextlib.contextmanager
def _off_the_ui(page: Page, shown_on_failure: str) -> Iterator[None]:
    """A blank page while the minutes of the platform's work are waited out, ``shown_on_failure``
    if the wait fails, for the failure's screenshot.

    An open page of Dagster's UI polls the webserver every few seconds: over the demo that is
    minutes of CPU the platform needs on two cores.
    """
    page.goto("about:blank")
    try:
        yield
    except BaseException:
        page.goto(shown_on_failure)
        raise


def _halted(instance: DagsterInstance) -> float | None:
    """When the bad day's contract check halted it (an evaluation that did not pass)."""
    for record in instance.event_log_storage.get_asset_check_execution_history(CONTRACT, 100):
        entry = record.event
        event = entry.dagster_event if entry else None
        if (
            record.partition == BAD_DAY
            and entry is not None
            and event is not None
            and event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION
            and not event.event_specific_data.passed  # type: ignore[union-attr]
        ):
            return entry.timestamp
    return None


def _first_act_after_drift(instance: DagsterInstance) -> float | None:
    """When a report on v1 after the drift's start first said act."""
    records = instance.fetch_materializations(MODEL_MONITORING_REPORT, limit=1000).records
    times = [
        r.timestamp
        for r in records
        if (r.partition_key or "") >= DRIFT_FROM
        and _value(r, "champion_version") == "1"
        and any(v["level"] == "act" for v in _value(r, "verdicts") or [])
    ]
    return min(times, default=None)


def _retraining_requested(instance: DagsterInstance) -> float | None:
    runs = instance.get_run_records(RunsFilter(tags={"dagster/sensor_name": "retraining_sensor"}))
    return min((r.create_timestamp.timestamp() for r in runs), default=None)


def _released_as_canary(instance: DagsterInstance) -> float | None:
    records = instance.fetch_materializations(CANARY_RELEASE, limit=100).records
    times = [
        r.timestamp
        for r in records
        if _value(r, "mode") == "canary" and _value(r, "candidate_version") == "2"
    ]
    return min(times, default=None)


def _promoted(instance: DagsterInstance) -> float | None:
    records = instance.fetch_materializations(PRODUCTION_MODEL, limit=100).records
    return min((r.timestamp for r in records if _value(r, "champion_version") == "2"), default=None)


def _value(record, key: str) -> Any:
    entry = record.asset_materialization.metadata.get(key)
    return entry.value if entry is not None else None


STORY: list[tuple[str, Callable[[DagsterInstance], float | None]]] = [
    ("the bad batch halted", _halted),
    ("the concept drift detected", _first_act_after_drift),
    ("retraining requested", _retraining_requested),
    ("the retrained model released as a canary", _released_as_canary),
    ("the canary promoted", _promoted),
]


def _the_story(server: DevServer, started: float, deadline: float) -> dict[str, float]:
    """When each step of the story happened, read from the instance until all have; progress
    is printed meanwhile."""
    seen: dict[str, float] = {}
    with DagsterInstance.from_config(str(server.home)) as instance:
        while len(seen) < len(STORY):
            assert server.process.poll() is None, "make demo exited during the story"
            assert time.monotonic() < deadline, f"only {list(seen)} within the story's time"
            for name, event in STORY:
                if name not in seen and (at := event(instance)) is not None:
                    seen[name] = at
            print(  # noqa: T201
                f"{time.monotonic() - started:5.0f} s: {', '.join(seen) or 'no step yet'}",
                flush=True,
            )
            time.sleep(POLL_SECONDS)
        version_2 = instance.fetch_materializations(PRODUCTION_MODEL, limit=1).records
    assert _value(version_2[0], "previous_champion") == "1"
    return seen


ASSETS_AND_AUTOMATION = """{
  repositoriesOrError { ... on RepositoryConnection { nodes {
    location { name }
    assetNodes { assetKey { path } groupName assetChecksOrError {
      ... on AssetChecks { checks { name blocking } } } }
    sensors { name sensorState { status } }
    schedules { name scheduleState { status } }
  } } }
}"""

LATEST_MATERIALIZATION = """{
  assetOrError(assetKey: {path: ["%s"]}) { ... on Asset { assetMaterializations(limit: 1) {
    runId } } }
}"""

LATEST_CHECK = """{
  assetNodes(assetKeys: [{path: ["%s"]}]) { assetChecksOrError { ... on AssetChecks { checks {
    name executionForLatestMaterialization { status } } } } }
}"""

RUNS_TRIGGERED_BY = """{
  runsOrError(filter: {tags: [{key: "flywheel/trigger", value: "%s"}]}) {
    ... on Runs { results { status tags { key value } } } }
}"""


def _the_platform_builds_itself(server: DevServer) -> None:
    """The code location, its sensors on, and what they build first, read on GraphQL."""
    assert (server.home / "dagster.yaml").is_file()

    [repository] = server.graphql(ASSETS_AND_AUTOMATION)["repositoriesOrError"]["nodes"]
    assert repository["location"]["name"] == "flywheel"
    assets = {"/".join(a["assetKey"]["path"]): a for a in repository["assetNodes"]}
    for name in ("raw_transactions", "fraud_labels", "validated_transactions"):
        assert assets[name]["groupName"] == "ingestion"
    for name in ("champion_scores", "model_monitoring_report"):
        assert assets[name]["groupName"] == "monitoring"
    checks = {
        c["name"]: c["blocking"] for c in assets["raw_transactions"]["assetChecksOrError"]["checks"]
    }
    assert checks["contract"] and checks["volume"] and checks["distribution_drift"]
    assert {s["name"]: s["sensorState"]["status"] for s in repository["sensors"]} == {
        "ingestion_sensor": "RUNNING",
        "raw_transactions_freshness_sensor": "RUNNING",
        "bootstrap_sensor": "RUNNING",
        "rag_index_freshness_sensor": "RUNNING",
        "prompt_change_sensor": "RUNNING",
        "retraining_sensor": "RUNNING",
        "monitoring_freshness_sensor": "RUNNING",
        "canary_sensor": "RUNNING",
        "promotion_sensor": "RUNNING",
        "automation_sensor": "RUNNING",
    }
    assert not repository["schedules"]  # ingestion_sensor follows the platform's clock instead

    def succeeded_runs(trigger: str = "history") -> list[dict[str, Any]]:
        runs = server.graphql(RUNS_TRIGGERED_BY % trigger)["runsOrError"]["results"]
        return [r for r in runs if r["status"] == "SUCCESS"]

    runs = wait_for(
        "a successful history run launched by the ingestion sensor",
        FIRST_RUNS_SECONDS,
        succeeded_runs,
    )
    # With no key and no network, the RAG index builds itself from the shipped corpus.
    wait_for(
        "a successful rag_index run launched by its freshness sensor",
        FIRST_RUNS_SECONDS,
        lambda: succeeded_runs("corpus_changed"),
    )
    assert (server.data_dir / "llm" / "rag_index" / "index_state.json").is_file()
    # ... and automation_sensor (on by default) evaluates the prompts and releases them.
    wait_for(
        "prompt_release materialized by declarative automation",
        FIRST_RUNS_SECONDS,
        lambda: server.graphql(LATEST_MATERIALIZATION % "prompt_release")["assetOrError"][
            "assetMaterializations"
        ],
    )
    registry = PromptRegistry(
        source_dir=str(PROJECT_ROOT / PROMPTS),
        store_url=f"sqlite:///{server.data_dir / 'llm' / 'prompt_registry.db'}",
    )
    assert registry.release(), "the release is recorded in the prompt store"

    # The feature store builds itself too: the daily runs compute the feature rows, automation
    # applies the registry and loads the online store, whose skew check then passes.
    def skew_check_status() -> str | None:
        [node] = server.graphql(LATEST_CHECK % "online_features")["assetNodes"]
        [check] = node["assetChecksOrError"]["checks"]
        execution = check["executionForLatestMaterialization"]
        return execution["status"] if execution and execution["status"] != "IN_PROGRESS" else None

    assert wait_for("the online store's skew check", FIRST_RUNS_SECONDS, skew_check_status) == (
        "SUCCEEDED"
    )
    assert (server.data_dir / "feast" / "online_store.db").is_file()
    partitions = {t["value"] for r in runs for t in r["tags"] if t["key"] == "dagster/partition"}
    assert partitions, runs
    for day in partitions:  # the instance and the lake are this test's, not the project's
        assert (server.data_dir / "lake" / "raw_transactions" / f"{day}.parquet").is_file()

    # The prediction service runs beside Dagster, not ready until a champion exists.
    def serving_health() -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"{server.serving_url}/healthz", timeout=5) as answer:
                return answer.status, json.load(answer)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    status, health = wait_for("the prediction service", STARTUP_SECONDS, serving_health)
    assert (status, health["champion"]) == (503, None), health


def _wait_for_the_first_champion(server: DevServer, started: float, deadline: float) -> str:
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
        assert server.process.poll() is None, f"make demo exited:\n{server.log.read_text()}"
        assert time.monotonic() < deadline, f"no champion within the story's time: {state}"
        time.sleep(POLL_SECONDS)


def _selection(run: dict[str, Any]) -> str:
    assets = ",".join(key["path"][-1] for key in run["assetSelection"] or [])
    return f"{run['runId'][:8]} ({assets or 'a job'})"


def _metadata_value(page: Page, key: str) -> Locator:
    """The value of ``key`` in an asset's metadata table: the last cell of the key's row."""
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name=key, exact=True))
    return row.get_by_role("cell").last
