"""A make target that serves the platform (`make dev`, `make demo`), run as a user runs it.

The target starts on free ports with its own Dagster instance and lake under the test's
``tmp_path``, so it shares nothing with the project's ``.flywheel`` nor with a test running
beside it, and everything it started is killed when the test ends, whatever the test did.
"""

import contextlib
import json
import os
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from resources.environments import DATA_DIR_VARIABLE, PROJECT_ROOT
from support.servers import free_port


class DevServer:
    """A running make target: its ports and URLs, its log, and a GraphQL client for Dagster."""

    def __init__(
        self,
        process: subprocess.Popen,
        ports: tuple[int, int],
        root: Path,
        state: Path,
        log: Path,
    ):
        self.process, self.root, self.log = process, root, log
        self.port, self.serving_port = ports
        self.url = f"http://127.0.0.1:{self.port}"
        self.serving_url = f"http://127.0.0.1:{self.serving_port}"
        # The instance and the lake the target uses.
        self.home, self.data_dir = state / "dagster_home", state / "data"

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
        """Whether the webserver answers; fails at once, with make's log, if make has exited."""
        assert self.process.poll() is None, f"make exited early:\n{self.log.read_text()}"
        with urllib.request.urlopen(f"{self.url}/server_info", timeout=5) as response:
            return response.status == 200

    def processes(self) -> list[psutil.Process]:
        """make, everything under it, and whatever runs on an instance under ``root``.

        The last catches what has left make's tree: the supervisor gives each command a process
        group of its own, and run workers are orphaned when their code server dies first.
        """
        try:
            make = psutil.Process(self.process.pid)
            found = [make, *make.children(recursive=True)]
        except psutil.NoSuchProcess:
            found = []
        for process in psutil.process_iter(["environ"]):
            home = (process.info["environ"] or {}).get("DAGSTER_HOME")
            if home and Path(home).is_relative_to(self.root):
                found.append(process)
        unique = {(process.pid, process.create_time()): process for process in found}
        return [process for process in unique.values() if is_running(process)]

    def group_alive(self) -> bool:
        """Whether any process is left in make's own process group."""
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True


@contextlib.contextmanager
def running_make(tmp_path: Path, target: str = "dev", *make_args: str) -> Iterator[DevServer]:
    """Start ``make <target>`` on free ports with its instance and lake under ``tmp_path``.

    ``make_args`` are more make variables (``"SCENARIO=..."``). make's output goes to
    ``server.log`` (``make-<target>.log`` in ``tmp_path``). At the end every process of it is
    killed, even one make no longer knows.
    """
    port, serving_port = free_port(), free_port()
    log = tmp_path / f"make-{target}.log"
    # make demo keeps its instance and lake under DEMO_DIR, which it replaces as it starts.
    state = tmp_path / "demo" if target == "demo" else tmp_path
    env = {**os.environ, DATA_DIR_VARIABLE: str(tmp_path / "data")}
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                "make",
                "--no-print-directory",
                target,
                f"DAGSTER_PORT={port}",
                f"SERVING_PORT={serving_port}",
                # On make's command line: the Makefile's own assignment would win over the
                # environment.
                f"DAGSTER_HOME={tmp_path / 'dagster_home'}",
                f"DEMO_DIR={tmp_path / 'demo'}",
                *make_args,
            ],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal gives it
        )
    server = DevServer(process, (port, serving_port), tmp_path, state, log)
    try:
        yield server
    finally:  # make may be gone while its children (in groups of their own) are not
        for leftover in server.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                leftover.kill()
        if server.group_alive():
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def is_running(process: psutil.Process) -> bool:
    """Whether ``process`` still runs: a zombie has ended, only its parent has not reaped it."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
