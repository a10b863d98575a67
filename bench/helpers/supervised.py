"""`make dev`'s supervisor started as the Makefile starts it, on a temporary instance and ports.

``python -m serving.dev`` (what ``make dev`` and ``make demo`` run, here with the project's
interpreter instead of ``uv run --no-sync python``) from the project folder, with its own
``DAGSTER_HOME`` holding the Makefile's ``dagster.yaml`` (read from the Makefile, so the bench
follows it), its own empty ``FLYWHEEL_DATA_DIR`` (the supervisor creates its MLflow store before
its children open it, so that creation is part of the first champion's time) and free ports.
On leaving, the supervisor is asked to stop as a Ctrl-C asks it, and whatever it started that is
still alive is killed.
"""

import contextlib
import datetime
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from resources.environments import DATA_DIR_VARIABLE
from resources.scenario import SCENARIO_VARIABLE, STARTED_FILE

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PORT = 10_000
# How long the supervisor gets to stop everything after its SIGINT (it takes 2-3 s).
STOP_SECONDS = 30.0


def makefile_dagster_yaml(makefile: Path) -> str:
    """The instance configuration the Makefile writes for make dev and make demo (DAGSTER_YAML)."""
    lines = makefile.read_text().splitlines()
    start = lines.index("define DAGSTER_YAML") + 1
    return "\n".join(lines[start : lines.index("endef", start)]) + "\n"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on, below the kernel's ephemeral range."""
    below = int(EPHEMERAL_RANGE.read_text().split()[0]) if EPHEMERAL_RANGE.exists() else 0
    for _ in range(100 if below > LOWEST_PORT + 1_000 else 0):
        port = random.SystemRandom().randrange(LOWEST_PORT, below)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Platform:
    """A running supervisor: where its instance and lake are, its ports, when it started."""

    root: Path
    process: subprocess.Popen
    dagster_port: int
    serving_port: int
    started: float  # epoch seconds, just before the supervisor's process was created
    log: Path
    scenario: Path | None
    ui_up_at: float | None = field(default=None)

    @property
    def home(self) -> Path:
        """The instance's DAGSTER_HOME."""
        return self.root / "dagster_home"

    @property
    def data_dir(self) -> Path:
        """The platform's FLYWHEEL_DATA_DIR."""
        return self.root / "data"

    def alive(self) -> bool:
        """Whether the supervisor still runs."""
        return self.process.poll() is None

    def poll_ui(self) -> None:
        """Record when Dagster's webserver first answers."""
        if self.ui_up_at is not None:
            return
        url = f"http://127.0.0.1:{self.dagster_port}/server_info"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                self.ui_up_at = time.time()

    def clock_started_at(self) -> float | None:
        """When the scenario's clock started (the supervisor's start file), epoch seconds."""
        try:
            text = (self.data_dir / STARTED_FILE).read_text().strip()
        except FileNotFoundError:
            return None
        return datetime.datetime.fromisoformat(text).timestamp() if text else None

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the supervisor's output."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def supervised(root: Path, project: Path, scenario: Path | None = None) -> Iterator[Platform]:
    """The supervisor of make dev (make demo with ``scenario``) on an empty instance in ``root``."""
    home, data = root / "dagster_home", root / "data"
    home.mkdir(parents=True)
    data.mkdir()
    (home / "dagster.yaml").write_text(makefile_dagster_yaml(project / "Makefile"))
    dagster_port, serving_port = free_port(), free_port()
    argv = [sys.executable, "-m", "serving.dev", "--dagster-port", str(dagster_port)]
    argv += ["--serving-port", str(serving_port)]
    if scenario is not None:
        argv += ["--scenario", str(scenario)]
    env = {**os.environ, "DAGSTER_HOME": str(home), DATA_DIR_VARIABLE: str(data)}
    env.pop(SCENARIO_VARIABLE, None)
    log = root / "supervisor.log"
    with log.open("w") as out:
        started = time.time()
        process = subprocess.Popen(
            argv, cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    platform = Platform(root, process, dagster_port, serving_port, started, log, scenario)
    try:
        yield platform
    finally:
        stop(platform)


def stop(platform: Platform) -> None:
    """SIGINT the supervisor as Ctrl-C does; then kill anything left on this instance."""
    process = platform.process
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_SECONDS)
    for leftover in _processes_on(platform.root):
        with contextlib.suppress(psutil.NoSuchProcess):
            leftover.kill()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _processes_on(root: Path) -> list[psutil.Process]:
    """Processes whose DAGSTER_HOME is under ``root``: the ones this platform started."""
    found = []
    for process in psutil.process_iter(["environ"]):
        home = (process.info["environ"] or {}).get("DAGSTER_HOME")
        if home and Path(home).is_relative_to(root) and process.pid != os.getpid():
            found.append(process)
    return found
