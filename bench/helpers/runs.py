"""What a Dagster instance recorded about its runs: when each was queued, launched, ran, ended.

Read from the run records and each run's event log (epoch seconds, the machine's clock):

* ``created``: the run was created (a sensor's request, automation's tick);
* ``starting``: the run coordinator dequeued it and the launcher began to start its process
  (``RUN_STARTING``); ``started``: the run's process is up and has loaded the code (``RUN_START``);
* ``ended``: ``RUN_SUCCESS`` (or failure or cancel);
* ``steps``: each step's own compute, ``STEP_START`` to ``STEP_SUCCESS`` (or failure): loading
  its inputs, the asset's code, its checks and writing its outputs;
* ``outputs``: the asset materializations and asset check evaluations the run recorded;
* ``materialized_at``: when the run recorded each asset's (last) materialization, so a run
  that other runs follow mid-way (automation reacts to an asset, not to the run's end) can be
  placed against them.

The orchestration overhead of a run is its wall time minus the steps' compute: starting a
process for the run and loading the code location, initializing resources, the event log
writes between steps, and finishing the run.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field

from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus

ENDED = {
    DagsterEventType.RUN_SUCCESS,
    DagsterEventType.RUN_FAILURE,
    DagsterEventType.RUN_CANCELED,
}
STEP_ENDED = {DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE}
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


@dataclass
class RunFacts:
    """One run, as its record and event log tell it."""

    run_id: str
    job: str
    status: str
    tags: dict[str, str]
    created: float
    starting: float | None = None
    started: float | None = None
    ended: float | None = None
    steps: dict[str, float] = field(default_factory=dict)
    materialized: list[str] = field(default_factory=list)
    materialized_at: dict[str, float] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def partition(self) -> str | None:
        """The partition key of a partitioned run."""
        return self.tags.get("dagster/partition")

    @property
    def finished(self) -> bool:
        """Whether the run has ended (success, failure or cancel)."""
        return self.ended is not None

    @property
    def succeeded(self) -> bool:
        """Whether the run succeeded."""
        return self.status == DagsterRunStatus.SUCCESS.value

    @property
    def failed(self) -> bool:
        """Whether the run failed or was canceled (its record says so, not just its events).

        The record is read before the event log, so a run read as it ends can carry its end
        event with the record's earlier status (``STARTED``): ended, but neither succeeded
        nor failed until read again.
        """
        return self.status in (DagsterRunStatus.FAILURE.value, DagsterRunStatus.CANCELED.value)

    @property
    def compute(self) -> float:
        """The steps' own compute, summed (the in-process executor runs them one by one)."""
        return sum(self.steps.values())

    @property
    def outputs(self) -> int:
        """Asset materializations and check evaluations recorded."""
        return len(self.materialized) + len(self.checks)

    @property
    def wall(self) -> float:
        """Launch to end (RUN_STARTING to RUN_SUCCESS): what the run costs once dequeued."""
        return (self.ended or 0.0) - (self.starting or self.created)

    @property
    def total(self) -> float:
        """Created to end: the wall plus the time the run waited in the queue."""
        return (self.ended or 0.0) - self.created

    @property
    def launch(self) -> float:
        """RUN_STARTING to RUN_START: the run's process started and the code location loaded."""
        if self.started is None or self.starting is None:
            return 0.0
        return self.started - self.starting

    @property
    def overhead(self) -> float:
        """The run's wall minus its steps' compute: what the orchestration cost it."""
        return self.wall - self.compute

    def label(self) -> str:
        """The job, or the assets an asset job materialized, and its partition."""
        what = self.job
        if self.job.startswith("__ASSET_JOB"):
            what = "+".join(sorted(set(self.materialized))) or self.tags.get("bench/selection", "-")
        return f"{what} [{self.partition}]" if self.partition else what


class RunReader:
    """Every run of an instance, read once each when finished (the event logs do not change)."""

    def __init__(self, instance: DagsterInstance):
        self.instance = instance
        self._done: dict[str, RunFacts] = {}

    def runs(self) -> list[RunFacts]:
        """Every run, oldest first; unfinished runs carry what is known so far."""
        out = []
        for record in self.instance.get_run_records(ascending=True, order_by="id"):
            run = record.dagster_run
            if run.run_id in self._done:
                out.append(self._done[run.run_id])
                continue
            facts = self._read(record)
            if run.status in FINISHED and facts.ended is not None:
                self._done[run.run_id] = facts
            out.append(facts)
        return out

    def _read(self, record) -> RunFacts:
        run = record.dagster_run
        selection = sorted(key.to_user_string() for key in run.asset_selection or [])
        facts = RunFacts(
            run_id=run.run_id,
            job=run.job_name,
            status=run.status.value,
            tags={**run.tags, "bench/selection": "+".join(selection)},
            created=record.create_timestamp.timestamp(),
        )
        step_start: dict[str, float] = {}
        for entry in self.instance.all_logs(run.run_id):
            kind, event = entry.dagster_event_type, entry.dagster_event
            if kind == DagsterEventType.RUN_STARTING:
                facts.starting = entry.timestamp
            elif kind == DagsterEventType.RUN_START:
                facts.started = entry.timestamp
            elif kind in ENDED:
                facts.ended = entry.timestamp
            elif kind == DagsterEventType.STEP_START and entry.step_key:
                step_start[entry.step_key] = entry.timestamp
            elif kind in STEP_ENDED and entry.step_key in step_start:
                facts.steps[entry.step_key] = entry.timestamp - step_start[entry.step_key]
                if kind == DagsterEventType.STEP_FAILURE and event is not None:
                    error = getattr(event.event_specific_data, "error", None)
                    facts.error = _innermost(error)
            elif kind == DagsterEventType.ASSET_MATERIALIZATION and event is not None:
                key = event.asset_key.to_user_string()  # type: ignore[union-attr]
                facts.materialized.append(key)
                facts.materialized_at[key] = entry.timestamp
            elif kind == DagsterEventType.ASSET_CHECK_EVALUATION and event is not None:
                check = event.event_specific_data.asset_check_key  # type: ignore[union-attr]
                facts.checks.append(f"{check.asset_key.to_user_string()}:{check.name}")
        return facts


def _innermost(error) -> str:
    """The message of the innermost cause of a step's error."""
    message = ""
    while error is not None:
        message = (error.message or "").strip().splitlines()[0] if error.message else message
        error = error.cause
    return message


def aggregate(runs: Iterable[RunFacts]) -> dict[str, float]:
    """Summed figures of some runs and their overhead per output (asset or check)."""
    runs = [run for run in runs if run.finished]
    outputs = sum(run.outputs for run in runs)
    wall = sum(run.wall for run in runs)
    compute = sum(run.compute for run in runs)
    total = sum(run.total for run in runs)
    return {
        "runs": len(runs),
        "outputs": outputs,
        "wall_s": wall,
        "total_s": total,
        "compute_s": compute,
        "launch_s": sum(run.launch for run in runs),
        "overhead_s": wall - compute,
        "overhead_per_output_s": (wall - compute) / outputs if outputs else float("nan"),
        "overhead_with_queue_per_output_s": (total - compute) / outputs
        if outputs
        else float("nan"),
    }
