"""The supervisor of `make dev`: starts Dagster and the prediction service, and stops all of it.

Run (the Makefile does; DAGSTER_HOME must name the instance)::

    python -m serving.dev --dagster-port 3000 --serving-port 8800

``make demo`` adds ``--scenario FILE``: every process plays the scenario, live traffic is sent to
the prediction service, and the story's clock starts with the first champion (serving/demo.py).

A shell's ``&`` and ``trap`` used to do this, and a stop could leave processes behind for
minutes: a signal to make's group reached every process at once and ``uv run`` forwarded it a
second time, which cuts ``dagster dev``'s own cleanup short, while its code server only exits
once no run is in flight and a run worker defers interrupts outside its steps. So each command
runs in its own process group and this process alone decides how they stop, whoever was
signalled (make's group by a terminal's Ctrl-C or a ``kill``, or this process alone):

1. each group gets one SIGINT, which ``dagster dev`` and uvicorn handle as a clean stop and a run
   worker as an interrupted run, recorded as failed;
2. after ``GRACE_SECONDS`` whatever is left is SIGKILLed: every process ever seen under a command
   (recorded as they appear, since orphans leave the tree) and the command's whole group;
3. runs left starting, started or canceling are marked canceled: no process executes them any
   more, and the UI would otherwise show them running forever. Queued runs stay queued: no
   process has them, the next `make dev` runs them (a backfill survives a restart), and each
   cancel costs about 0.3 s on SQLite, which a queue of many days would add to the stop.

A command that exits on its own stops the rest too, and the supervisor exits non-zero.
"""

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import psutil
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster import build_resources as initialize

from resources.environments import build_resources
from serving import demo

log = logging.getLogger("serving.dev")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# How long the commands get to stop cleanly before SIGKILL. Within a second of their interrupt a
# run worker has recorded its run failed, the webserver and daemon have shut down and the
# prediction service has flushed its log; their interpreters' exit then takes seconds more
# (a whole clean shutdown of `dagster dev` took 5-12 s), which SIGKILL skips harmlessly.
GRACE_SECONDS = 2.0
# Often enough to record a process before it can be orphaned (a run's compute log tailers live
# as long as the run; a run lives for seconds).
WATCH_SECONDS = 0.5
STOPPING_POLL_SECONDS = 0.1
KILLED_WAIT_SECONDS = 1.0
IN_FLIGHT = [
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]
STOPPED_MESSAGE = "make dev stopped while this run was in flight."


@dataclass(frozen=True)
class Command:
    """One long-running process of `make dev`: a name for the log and the argv to start it."""

    name: str
    argv: tuple[str, ...]


def dev_commands(dagster_port: int, serving_port: int) -> list[Command]:
    """What `make dev` runs: Dagster (webserver, daemon, code server) and the prediction service."""
    dagster = ("-m", "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1")
    serving = ("-m", "serving.model.app", "--port", str(serving_port))
    return [
        Command("dagster", (sys.executable, *dagster, "-p", str(dagster_port))),
        Command("serving", (sys.executable, *serving)),
    ]


class Supervisor:
    """Runs commands until a stop signal or until one of them exits, then stops every process."""

    def __init__(self, commands: Sequence[Command], grace_seconds: float = GRACE_SECONDS):
        self.commands, self.grace_seconds = list(commands), grace_seconds
        # Set by the signal handler, which takes no lock: a handler runs in the main thread
        # between any two bytecodes, also inside an Event's or a logger's locked section (and a
        # SIGTERM to make's group arrives twice, once forwarded by uv), so a lock taken there
        # can deadlock the thread that holds it.
        self._signal_name: str | None = None
        self._children: dict[str, tuple[subprocess.Popen, psutil.Process]] = {}
        self._seen: dict[tuple[int, float], psutil.Process] = {}

    def run(self) -> int:
        """Start every command and stop them all; 0 on a requested stop, 1 if one exited."""
        for signum in STOP_SIGNALS:  # before any child exists, so none can be left unstopped
            signal.signal(signum, self._request_stop)
        try:
            for command in self.commands:
                self._start(command)
            exited = self._watch()
        finally:
            self._stop_all()
        return 1 if exited else 0

    def _request_stop(self, signum: int, _frame: FrameType | None) -> None:
        self._signal_name = signal.Signals(signum).name

    def _start(self, command: Command) -> None:
        # A group of its own: a terminal's Ctrl-C reaches make, uv and this process only.
        child = subprocess.Popen(command.argv, stdin=subprocess.DEVNULL, process_group=0)
        self._children[command.name] = (child, psutil.Process(child.pid))
        log.info("started %s (pid %d): %s", command.name, child.pid, " ".join(command.argv))

    def _watch(self) -> str | None:
        """Record processes until asked to stop; the name of a command that exited, if one did."""
        while self._signal_name is None:
            time.sleep(WATCH_SECONDS)  # resumed after a signal's handler: a stop waits ≤ this
            self._record()
            for name, (child, process) in self._children.items():
                if not _running(process):  # a zombie until _stop_all: its group id stays ours
                    log.error("%s (pid %d) exited on its own: stopping the rest", name, child.pid)
                    return name
        log.info("%s received: stopping every process", self._signal_name)
        return None

    def _record(self) -> None:
        for _child, root in self._children.values():
            try:
                family = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for process in family:
                self._seen.setdefault((process.pid, process.create_time()), process)

    def _alive(self) -> list[psutil.Process]:
        return [process for process in self._seen.values() if _running(process)]

    def _signal_groups(self, signum: signal.Signals) -> None:
        for child, _process in self._children.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is empty
                os.killpg(child.pid, signum)

    def _stop_all(self) -> None:
        """SIGINT each group, SIGKILL what is left after the grace period, reap the children."""
        began = time.monotonic()
        self._record()
        self._signal_groups(signal.SIGINT)
        left = self._wait_until_gone(self.grace_seconds)
        if left:
            names = sorted({_describe(process) for process in left})
            log.warning("killing %d processes left after the grace: %s", len(left), names)
        # Also kills what joined a group since the last record; every leader is ours until reaped.
        self._signal_groups(signal.SIGKILL)
        for process in left:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        self._wait_until_gone(KILLED_WAIT_SECONDS)
        for name, (child, _process) in self._children.items():
            log.info("%s (pid %d) ended with status %s", name, child.pid, child.wait())
        log.info("every process stopped %.1f s after the stop began", time.monotonic() - began)

    def _wait_until_gone(self, seconds: float) -> list[psutil.Process]:
        """Keep recording until every process seen has ended or ``seconds`` pass; those left."""
        deadline = time.monotonic() + seconds
        while (alive := self._alive()) and time.monotonic() < deadline:
            time.sleep(STOPPING_POLL_SECONDS)
            self._record()
        return alive


def _running(process: psutil.Process) -> bool:
    """Whether ``process`` still runs: a zombie has ended, only its parent has not reaped it."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _describe(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline()[1:4])
    except psutil.Error:
        return str(process.pid)


def cancel_runs_in_flight(instance: DagsterInstance) -> list[str]:
    """Mark the runs no process executes any more canceled; their ids.

    Runs a worker had time to record as failed are left as they are.
    """
    runs = instance.get_runs(RunsFilter(statuses=IN_FLIGHT))
    for run in runs:
        instance.report_run_canceled(run, message=STOPPED_MESSAGE)
    return [run.run_id for run in runs]


def main(argv: Sequence[str] | None = None) -> int:
    """Supervise `make dev`'s commands; the exit status is the supervisor's."""
    parser = argparse.ArgumentParser(
        prog="python -m serving.dev", description="Run make dev's processes; stop all of them."
    )
    parser.add_argument("--dagster-port", type=int, required=True)
    parser.add_argument("--serving-port", type=int, required=True)
    parser.add_argument(
        "--scenario", type=Path, help="make demo: the scenario file to play on a compressed clock"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)  # this module's steps, not the INFO chatter of Dagster's storage
    commands = dev_commands(args.dagster_port, args.serving_port)
    story_ended = threading.Event()
    if args.scenario:
        demo.log.setLevel(logging.INFO)
        if traffic := demo.play(args.scenario, args.serving_port):
            commands.append(Command("traffic", traffic))
    # Both stores are opened before anything else starts: a first open creates or migrates them
    # (about 2 s each), which a stop should not wait for, and processes that open an empty
    # MLflow store at once race to create its tables (the loser exits, and make dev with it).
    with (
        DagsterInstance.get() as instance,
        initialize({"model_registry": build_resources("local")["model_registry"]}) as stores,
    ):
        stores.model_registry.ensure_experiment()
        if args.scenario:
            threading.Thread(
                target=demo.start_clock_with_first_champion,
                args=(stores.model_registry, story_ended),
                daemon=True,
            ).start()
        status = Supervisor(commands).run()
        story_ended.set()
        canceled = cancel_runs_in_flight(instance)
    log.info("marked %d runs canceled: %s", len(canceled), canceled)
    return status


if __name__ == "__main__":
    exit_status = main()
    logging.shutdown()
    # Everything is stopped, written and flushed: skip the interpreter's teardown of Dagster's
    # thousands of modules, 1-2 s of CPU that would count against the stop.
    os._exit(exit_status)
