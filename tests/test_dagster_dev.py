"""The README's first command, for real: `make dev` serves the code location and its automation.

Runs `make dev` as a user does (on a free port, with its instance and lake under ``tmp_path``),
then asks the webserver's GraphQL API what a person would look for in the UI: the code location
loaded, the ingestion assets and their checks, the schedule and sensor on without a click, and
the freshness sensor launching ingestion runs that succeed. Ctrl-C then stops every process
of it: webserver, daemon and code server.
"""

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.servers import free_port, wait_for

from resources.environments import DATA_DIR_VARIABLE, PROJECT_ROOT

pytestmark = pytest.mark.e2e

STARTUP_SECONDS = 120
# The sensor's first tick comes within a minute of the daemon starting; runs take seconds.
FIRST_RUNS_SECONDS = 180


class DevServer:
    """A running `make dev` and a GraphQL client for it."""

    def __init__(self, process: subprocess.Popen, port: int, serving_port: int, log: Path):
        self.process, self.url, self.log = process, f"http://127.0.0.1:{port}", log
        self.serving_url = f"http://127.0.0.1:{serving_port}"

    def graphql(self, query: str) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
        assert "errors" not in answer, answer
        return answer["data"]

    def is_up(self) -> bool:
        assert self.process.poll() is None, f"make dev exited early:\n{self.log.read_text()}"
        with urllib.request.urlopen(f"{self.url}/server_info", timeout=5) as response:
            return response.status == 200


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[DevServer]:
    port, serving_port = free_port(), free_port()
    log = tmp_path / "make-dev.log"
    env = {**os.environ, DATA_DIR_VARIABLE: str(tmp_path / "data")}
    # On make's command line: the Makefile's own assignment would win over the environment.
    home = f"DAGSTER_HOME={tmp_path / 'dagster_home'}"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                "make",
                "--no-print-directory",
                "dev",
                f"DAGSTER_PORT={port}",
                f"SERVING_PORT={serving_port}",
                home,
            ],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal gives it
        )
    server = DevServer(process, port, serving_port, log)
    try:
        yield server
    finally:  # make may be gone while its children are not: clear the whole group
        if _group_alive(server):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


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


def test_make_dev_serves_the_code_location_with_automation_on(
    dev_server: DevServer, tmp_path: Path
) -> None:
    wait_for("the Dagster webserver", STARTUP_SECONDS, dev_server.is_up)
    assert (tmp_path / "dagster_home" / "dagster.yaml").is_file()

    [repository] = dev_server.graphql(ASSETS_AND_AUTOMATION)["repositoriesOrError"]["nodes"]
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
        "raw_transactions_freshness_sensor": "RUNNING",
        "rag_index_freshness_sensor": "RUNNING",
        "prompt_change_sensor": "RUNNING",
        "retraining_sensor": "RUNNING",
        "monitoring_freshness_sensor": "RUNNING",
        "canary_sensor": "RUNNING",
        "automation_sensor": "RUNNING",
    }
    assert {s["name"]: s["scheduleState"]["status"] for s in repository["schedules"]} == {
        "daily_ingestion_schedule": "RUNNING"
    }

    def succeeded_runs(trigger: str = "freshness") -> list[dict[str, Any]]:
        runs = dev_server.graphql(RUNS_TRIGGERED_BY % trigger)["runsOrError"]["results"]
        return [r for r in runs if r["status"] == "SUCCESS"]

    runs = wait_for(
        "a successful run launched by the freshness sensor", FIRST_RUNS_SECONDS, succeeded_runs
    )
    # With no key and no network, the RAG index builds itself from the shipped corpus.
    wait_for(
        "a successful rag_index run launched by its freshness sensor",
        FIRST_RUNS_SECONDS,
        lambda: succeeded_runs("corpus_changed"),
    )
    assert (tmp_path / "data" / "llm" / "rag_index" / "index_state.json").is_file()
    # ... and automation_sensor (on by default) evaluates the prompts and releases them.
    wait_for(
        "prompt_release materialized by declarative automation",
        FIRST_RUNS_SECONDS,
        lambda: dev_server.graphql(LATEST_MATERIALIZATION % "prompt_release")["assetOrError"][
            "assetMaterializations"
        ],
    )
    assert (tmp_path / "data" / "llm" / "prompt_registry" / "release.json").is_file()

    # The feature store builds itself too: the daily runs compute the feature rows, automation
    # applies the registry and loads the online store, whose skew check then passes.
    def skew_check_status() -> str | None:
        [node] = dev_server.graphql(LATEST_CHECK % "online_features")["assetNodes"]
        [check] = node["assetChecksOrError"]["checks"]
        execution = check["executionForLatestMaterialization"]
        return execution["status"] if execution and execution["status"] != "IN_PROGRESS" else None

    assert wait_for("the online store's skew check", FIRST_RUNS_SECONDS, skew_check_status) == (
        "SUCCEEDED"
    )
    assert (tmp_path / "data" / "feast" / "online_store.db").is_file()
    partitions = {t["value"] for r in runs for t in r["tags"] if t["key"] == "dagster/partition"}
    assert partitions, runs
    for day in partitions:  # the instance and the lake are this test's, not the project's
        assert (tmp_path / "data" / "lake" / "raw_transactions" / f"{day}.parquet").is_file()

    # The prediction service runs beside Dagster, not ready until a champion exists.
    def serving_health() -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"{dev_server.serving_url}/healthz", timeout=5) as answer:
                return answer.status, json.load(answer)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    status, health = wait_for("the prediction service", STARTUP_SECONDS, serving_health)
    assert (status, health["champion"]) == (503, None), health

    os.killpg(dev_server.process.pid, signal.SIGINT)  # Ctrl-C
    dev_server.process.wait(timeout=60)  # make itself dies of the SIGINT, as in a terminal
    wait_for("every process of make dev stopped", 60, lambda: not _group_alive(dev_server))


def _group_alive(server: DevServer) -> bool:
    try:
        os.killpg(server.process.pid, 0)
    except ProcessLookupError:
        return False
    return True
