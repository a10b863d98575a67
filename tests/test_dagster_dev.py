"""The README's first command stops as a user expects: every process, within seconds.

Runs `make dev` as a user does (on a free port, with its instance and lake under ``tmp_path``),
launches a run and, while it is in flight, stops it (Ctrl-C, SIGTERM to the group or to the
supervisor alone): every process it started (webserver, daemon, code server, run worker,
prediction service) ends within seconds and no run is left STARTED. What `make dev` serves and
builds by itself on an empty instance is tested in a browser on `make demo`, which starts the
same processes (``test_demo.py``).
"""

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from support.dev_server import DevServer, is_running, running_make
from support.servers import wait_for

from platform_assets.common.partitions import FIRST_BUSINESS_DAY
from resources.environments import PROJECT_ROOT

pytestmark = pytest.mark.e2e

STARTUP_SECONDS = 120
# The sensor's first tick comes within a minute of the daemon starting; runs take seconds.
FIRST_RUNS_SECONDS = 180
# What the user asked for: every process gone this long after Ctrl-C or SIGTERM.
STOP_SECONDS = 10


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[DevServer]:
    with running_make(tmp_path) as server:
        yield server


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
    dev_server: DevServer, stop: Any, make_status: int
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
    assert not left, f"{[p.cmdline() for p in left]}\n{_tail(dev_server.log)}"
    assert stopped_after < STOP_SECONDS, f"the last process ended {stopped_after:.1f} s after"
    assert dev_server.process.wait(timeout=5) == make_status

    with DagsterInstance.from_config(str(dev_server.home)) as instance:
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


def _tail(log: Path, lines: int = 40) -> str:
    """The end of make's log: what the supervisor said while it stopped."""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _still_running(server: DevServer, recorded: list[psutil.Process]) -> list[psutil.Process]:
    return [*server.processes(), *(p for p in recorded if is_running(p))]
