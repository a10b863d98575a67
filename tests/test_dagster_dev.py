"""The README's first command, for real: `make dev` serves the code location and its automation.

Runs `make dev` as a user does (on a free port, with its instance and lake under ``tmp_path``),
then asks the webserver's GraphQL API what a person would look for in the UI: the code location
loaded, the ingestion assets and their checks, the sensors on without a click, and the
ingestion sensor launching the history's ingestion runs that succeed. Ctrl-C then stops every
process of it: webserver, daemon and code server. A stop with a run in flight (Ctrl-C, SIGTERM
to the group or to the supervisor alone) ends every process within seconds and leaves no run
STARTED.
"""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from support.servers import free_port, wait_for

from platform_assets.common.partitions import FIRST_BUSINESS_DAY
from resources.environments import DATA_DIR_VARIABLE, PROJECT_ROOT

pytestmark = pytest.mark.e2e

STARTUP_SECONDS = 120
# The sensor's first tick comes within a minute of the daemon starting; runs take seconds.
FIRST_RUNS_SECONDS = 180
# What the user asked for: every process gone this long after Ctrl-C or SIGTERM.
STOP_SECONDS = 10


class DevServer:
    """A running `make dev` and a GraphQL client for it."""

    def __init__(
        self, process: subprocess.Popen, port: int, serving_port: int, log: Path, home: Path
    ):
        self.process, self.url, self.log = process, f"http://127.0.0.1:{port}", log
        self.serving_url = f"http://127.0.0.1:{serving_port}"
        self.home = home

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
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

    def processes(self) -> list[psutil.Process]:
        """make, everything under it, and whatever runs on its instance even once orphaned."""
        try:
            make = psutil.Process(self.process.pid)
            found = [make, *make.children(recursive=True)]
        except psutil.NoSuchProcess:
            found = []
        for process in psutil.process_iter(["environ"]):
            if (process.info["environ"] or {}).get("DAGSTER_HOME") == str(self.home):
                found.append(process)
        unique = {(process.pid, process.create_time()): process for process in found}
        return [process for process in unique.values() if _running(process)]


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[DevServer]:
    port, serving_port = free_port(), free_port()
    log = tmp_path / "make-dev.log"
    env = {**os.environ, DATA_DIR_VARIABLE: str(tmp_path / "data")}
    # On make's command line: the Makefile's own assignment would win over the environment.
    home = tmp_path / "dagster_home"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                "make",
                "--no-print-directory",
                "dev",
                f"DAGSTER_PORT={port}",
                f"SERVING_PORT={serving_port}",
                f"DAGSTER_HOME={home}",
            ],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal gives it
        )
    server = DevServer(process, port, serving_port, log, home)
    try:
        yield server
    finally:  # make may be gone while its children (in groups of their own) are not
        for leftover in server.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                leftover.kill()
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
        "ingestion_sensor": "RUNNING",
        "raw_transactions_freshness_sensor": "RUNNING",
        "bootstrap_sensor": "RUNNING",
        "rag_index_freshness_sensor": "RUNNING",
        "prompt_change_sensor": "RUNNING",
        "retraining_sensor": "RUNNING",
        "monitoring_freshness_sensor": "RUNNING",
        "canary_sensor": "RUNNING",
        "automation_sensor": "RUNNING",
    }
    assert not repository["schedules"]  # ingestion_sensor follows the platform's clock instead

    def succeeded_runs(trigger: str = "history") -> list[dict[str, Any]]:
        runs = dev_server.graphql(RUNS_TRIGGERED_BY % trigger)["runsOrError"]["results"]
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
    wait_for("every process of make dev stopped", 60, lambda: not dev_server.processes())
    assert not _group_alive(dev_server)


LAUNCH_INGESTION = """mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) { __typename }
}"""

STARTED_INGESTION_RUNS = """{
  runsOrError(filter: {pipelineName: "ingestion_job", statuses: [STARTED]}) {
    ... on Runs { results { runId } } }
}"""


def send_ctrl_c(server: DevServer) -> None:
    os.killpg(server.process.pid, signal.SIGINT)  # what a terminal sends its foreground group


def send_sigterm_to_the_group(server: DevServer) -> None:
    os.killpg(server.process.pid, signal.SIGTERM)


def send_sigterm_to_the_supervisor(server: DevServer) -> None:
    [supervisor] = [p for p in server.processes() if p.cmdline()[1:3] == ["-m", "serving.dev"]]
    supervisor.terminate()


@pytest.mark.parametrize(
    ("stop", "make_status"),
    [
        (send_ctrl_c, -signal.SIGINT),
        (send_sigterm_to_the_group, -signal.SIGTERM),
        (send_sigterm_to_the_supervisor, 0),  # a requested stop: the supervisor exits 0
    ],
)
def test_a_stop_ends_every_process_within_seconds_and_leaves_no_run_started(
    dev_server: DevServer, tmp_path: Path, stop: Any, make_status: int
) -> None:
    wait_for("the Dagster webserver", STARTUP_SECONDS, dev_server.is_up)
    wait_for("ingestion_job launched", STARTUP_SECONDS, lambda: _launch_ingestion(dev_server))
    in_flight = _first_started_ingestion_run(dev_server, FIRST_RUNS_SECONDS)
    recorded = dev_server.processes()
    commands = " | ".join(" ".join(p.cmdline()) for p in recorded)
    for part in ("dagster_webserver", "dagster._daemon", "dagster api grpc", "serving.model.app"):
        assert part in commands

    began = time.monotonic()
    stop(dev_server)
    while (left := _still_running(dev_server, recorded)) and time.monotonic() - began < 15:
        time.sleep(0.1)
    stopped_after = time.monotonic() - began
    assert not left, [p.cmdline() for p in left]
    assert stopped_after < STOP_SECONDS, f"the last process ended {stopped_after:.1f} s after"
    assert dev_server.process.wait(timeout=5) == make_status

    with DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
        run = instance.get_run_by_id(in_flight)
        assert run and run.status in (DagsterRunStatus.CANCELED, DagsterRunStatus.FAILURE)
        unfinished = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]
        assert not instance.get_runs(RunsFilter(statuses=[*unfinished, DagsterRunStatus.CANCELING]))


def test_a_command_that_exits_on_its_own_stops_the_others_and_fails_the_supervisor() -> None:
    script = (
        "import logging, sys\n"
        "from serving.dev import Command, Supervisor\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "quits = Command('quits', (sys.executable, '-c', 'pass'))\n"
        "stays = Command('stays', ('sleep', '300'))\n"
        "sys.exit(Supervisor([quits, stays]).run())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 1, done.stderr
    assert "quits (pid" in done.stderr and "exited on its own" in done.stderr
    [stays] = re.findall(r"started stays \(pid (\d+)\)", done.stderr)
    assert f"stays (pid {stays}) ended with status -{signal.SIGINT.value}" in done.stderr
    assert not psutil.pid_exists(int(stays))


def _launch_ingestion(server: DevServer) -> bool:
    """Launch one day of ingestion_job; False while the code location is still loading."""
    params = {
        "selector": {
            "repositoryLocationName": "flywheel",
            "repositoryName": "__repository__",
            "jobName": "ingestion_job",
        },
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": FIRST_BUSINESS_DAY}]},
    }
    answer = server.graphql(LAUNCH_INGESTION, {"params": params})
    return answer["launchRun"]["__typename"] == "LaunchRunSuccess"


def _first_started_ingestion_run(server: DevServer, seconds: float) -> str:
    """The id of an ingestion run just seen STARTED (it runs for seconds: polled closely)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if started := server.graphql(STARTED_INGESTION_RUNS)["runsOrError"]["results"]:
            return started[0]["runId"]
        time.sleep(0.2)
    pytest.fail(f"no ingestion run STARTED within {seconds} s")


def _still_running(server: DevServer, recorded: list[psutil.Process]) -> list[psutil.Process]:
    return [*server.processes(), *(p for p in recorded if _running(p))]


def _running(process: psutil.Process) -> bool:
    """A zombie has ended: only its parent has not reaped it yet."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _group_alive(server: DevServer) -> bool:
    try:
        os.killpg(server.process.pid, 0)
    except ProcessLookupError:
        return False
    return True
