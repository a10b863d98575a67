"""Benchmark of the loop on the real platform: first champion, drift to new champion, overhead.

Every figure comes from the platform ``make dev`` / ``make demo`` start (``python -m
serving.dev``, the same supervisor, here with the project's interpreter instead of ``uv run``)
on an empty instance of its own: a temporary ``DAGSTER_HOME`` with the Makefile's
``dagster.yaml``, a temporary ``FLYWHEEL_DATA_DIR`` and free ports. Nothing is clicked or
materialized by the bench: it reads the instance (``DagsterInstance.from_config``: run records,
event logs, materializations) while the sensors, automation and the live traffic do the work.

1. **First champion**: wall seconds from the supervisor's start to the first
   ``production_model`` materialization, by phase (webserver up, which includes the
   supervisor's creation of both stores; baseline accepted, history ingested, training_set,
   candidate, gate, release, promotion). On a copy of ``tests/scenarios/short.yaml``
   (``--rows-per-day`` payments a day, 3-day labels: 47 days of history before 2026-03-01)
   and, without ``--quick``, in make dev's real world (no scenario: 10,000 payments a day,
   30-day labels, 75 days of history before today). **Peer**: the same runs without the
   orchestration: the sum of their steps' own compute (``STEP_START`` to ``STEP_SUCCESS``), i.e.
   the chain executed step after step in one process with no daemon, queue, run launcher or
   sensor interval (imports warm), and the sum of the runs' walls (each run's process, one
   after another, without waiting for sensors or the queue).
2. **Drift onset -> retraining request -> new champion** (not with ``--quick``): the short
   scenario played as written (from 2026-03-01, 1.5 simulated days a minute, the bad batch's
   schema change on the second day, the concept drift from the third), in simulated days and
   wall seconds after the drift's onset. **Peer**: the floor the policies set with no
   orchestration latency at all: a drift is retrainable once ``min_days_after_change`` days
   after it have matured labels (``label_delay_days``), and a canary is promoted after its
   ``soak_hours``. Given up (and said why) when no ``model_monitoring_report`` of a day from
   the onset exists two simulated days after the onset day's labels are in.
3. **A one-day cycle** after the bootstrap: the day's ``ingestion_job`` run (fetch, contract,
   split, labels, the day's feature rows, then its ``champion_scores`` and
   ``model_monitoring_report``, which the ingestion sensor leaves out only before the first
   champion), the ``online_features`` run automation starts on its feature rows and, while a
   version is on canary, the next ``canary_analysis`` run after it. Per run: its wall
   (``RUN_STARTING`` to ``RUN_SUCCESS``; and from its creation, with the queue) minus its steps'
   compute, per asset and check it recorded; and from the day landing by the platform's clock
   (an hour after it ended, on the scenario's compressed clock) to each run done: **ingest ->
   canary** is the day landed -> the ``canary_analysis`` run that follows it done. The day is
   the scenario's first (its start), on the short scenario without events at 0.5 simulated
   days a minute (the next day lands two minutes later, so one day's runs are timed alone):
   with ``--quick`` at ``--rows-per-day`` (its first champion is then part 1's figure), without
   it at 100,000 payments a day (1-day labels: 46 days of history). Without ``--quick`` also
   the first day of the story ingested while v2 is on canary, its next analysis included. A day
   whose ingestion run did not score and report it is reported with what it did, marked
   incomplete.

Targets: first champion <= 5 minutes; <= 0.5 s of orchestration overhead per asset; a day
landed -> canary analysed in <= 60 s (a day without a canary: landed -> its last run done);
retraining requested <= 1 simulated day and the new champion <= 2 simulated days after the
policies' floor (in wall seconds: the same at the story's speed).

This 2-core machine is shared: the load average is printed at the start and the end. Run from
the project root: ``.venv/bin/python bench/loop.py --quick`` (about 12 minutes) or without
``--quick`` (an hour or more). Tables on stdout, progress on stderr; the last line of stdout
is one JSON object: every figure, and ``targets`` (each figure with its target and whether it
was met).
"""

import argparse
import datetime
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from dagster import AssetKey, DagsterInstance, EventLogRecord
from helpers.output import progress, rounded
from helpers.runs import RunFacts, RunReader, aggregate
from helpers.supervised import Platform, supervised
from helpers.tables import print_table

from platform_assets.common.bootstrap import LANDING_DELAY
from platform_assets.common.keys import (
    CANARY_ANALYSIS,
    MODEL_MONITORING_REPORT,
    PRODUCTION_MODEL,
    TRAINING_SET,
    TRANSACTION_BASELINE,
)
from resources.environments import PROJECT_ROOT
from resources.monitoring_policy import MonitoringPolicy
from resources.release_policy import ReleasePolicy
from resources.scenario import Scenario, load_scenario

T = TypeVar("T")

TARGET_FIRST_CHAMPION_S = 300.0
TARGET_OVERHEAD_PER_ASSET_S = 0.5
TARGET_DAY_CYCLE_S = 60.0
# Simulated days after the policies' floor: a retraining request, a new champion.
TARGET_RETRAINING_AFTER_FLOOR_DAYS = 1.0
TARGET_NEW_CHAMPION_AFTER_FLOOR_DAYS = 2.0
SHORT = PROJECT_ROOT / "tests" / "scenarios" / "short.yaml"
POLL_SECONDS = 5.0
PROGRESS_SECONDS = 30.0
# A run records RUN_SUCCESS this long at most after its last materialization.
RUN_END_SLACK_S = 3.0
# No run queued or running and none created for this long: the platform is stuck.
IDLE_SECONDS = 300.0
CANDIDATE_MODEL = AssetKey("candidate_model")
EVALUATION_REPORT = AssetKey("evaluation_report")
CANARY_RELEASE = AssetKey("canary_release")
# What a day's ingestion run records once a champion exists, after the day's feature rows.
DAY_FEATURES = ("customer_daily_activity", "customer_features", "merchant_features")
DAY_MONITORING = ("champion_scores", "model_monitoring_report")
# What the first champion needs: a run that records one of these is part of the chain.
CHAIN = {
    "raw_transactions", "fraud_labels", "validated_transactions", "quarantined_transactions",
    "customer_daily_activity", "customer_features", "merchant_features", "transaction_baseline",
    "feature_store_registry",
    "training_set", "candidate_model", "evaluation_report", "canary_release", "canary_analysis",
    "production_model",
}  # fmt: skip


class Stalled(Exception):
    """The platform stopped making progress (or its supervisor exited) before the milestone."""


# ---------------------------------------------------------------------------------------------
# Scenarios, waiting and reading the instance


def write_scenario(folder: Path, name: str, **changes: Any) -> tuple[Path, Scenario]:
    """A copy of the short scenario with ``changes``, checked as make demo checks it."""
    raw = yaml.safe_load(SHORT.read_text())
    raw.update(changes)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path, load_scenario(path)


def wait_for(
    platform: Platform,
    reader: RunReader,
    what: str,
    found: Callable[[list[RunFacts]], T | None],
    timeout: float,
) -> T:
    """Poll the instance until ``found`` returns something; Stalled on exit, idleness or timeout."""
    progress(f"waiting for {what}")
    began = last_activity = said = time.time()
    known = 0
    while True:
        if not platform.alive():
            raise Stalled(f"the supervisor exited:\n{platform.log_tail()}")
        platform.poll_ui()
        runs = reader.runs()
        result = found(runs)
        if result is not None:
            return result
        now = time.time()
        if len(runs) > known or any(not run.finished for run in runs):
            known, last_activity = len(runs), now
        if now - last_activity > IDLE_SECONDS:
            raise Stalled(f"no run for {IDLE_SECONDS:.0f} s before {what}; {last_failure(runs)}")
        if now - began > timeout:
            raise Stalled(f"{what} not within {timeout:.0f} s; {last_failure(runs)}")
        if now - said >= PROGRESS_SECONDS:
            done, said = sum(run.finished for run in runs), now
            progress(f"  {now - platform.started:6.0f} s: {done}/{len(runs)} runs done", end=False)
        time.sleep(POLL_SECONDS)


def last_failure(runs: list[RunFacts]) -> str:
    """The latest failed run and its error, for a report of a stall."""
    failed = [run for run in runs if run.finished and not run.succeeded]
    if not failed:
        return "no run failed"
    run = failed[-1]
    return f"{len(failed)} run(s) failed, the last {run.label()}: {run.error or run.status}"


def materializations(instance: DagsterInstance, key: AssetKey) -> list[EventLogRecord]:
    """Every materialization of ``key``, oldest first."""
    return list(instance.fetch_materializations(key, limit=10_000, ascending=True).records)


def metadata(record: EventLogRecord, key: str) -> Any:
    """A materialization's metadata value (None if absent)."""
    entry = record.asset_materialization.metadata.get(key)  # type: ignore[union-attr]
    return entry.value if entry is not None else None


def first_at(
    instance: DagsterInstance, key: AssetKey, where: Callable[[EventLogRecord], bool] = bool
) -> float | None:
    """When ``key`` was first materialized (matching ``where``), epoch seconds."""
    return next((r.timestamp for r in materializations(instance, key) if where(r)), None)


def open_instance(platform: Platform, reader_box: list) -> RunReader:
    """The platform's instance, opened once the supervisor has created its storage."""
    deadline = time.time() + 600
    while platform.ui_up_at is None:
        if not platform.alive():
            raise Stalled(f"the supervisor exited:\n{platform.log_tail()}")
        if time.time() > deadline:
            raise Stalled("Dagster's webserver did not answer within 600 s")
        platform.poll_ui()
        time.sleep(1)
    reader = RunReader(DagsterInstance.from_config(str(platform.home)))
    reader_box.append(reader)
    return reader


# ---------------------------------------------------------------------------------------------
# 1. Empty instance -> first champion


def first_champion(platform: Platform, reader: RunReader, timeout: float) -> dict[str, Any]:
    """Wait for the first champion; its time and phases, next to the peer (compute only)."""
    instance = reader.instance
    try:
        champion_at = wait_for(
            platform, reader, "the first champion",
            lambda _: first_at(instance, PRODUCTION_MODEL), timeout,
        )  # fmt: skip
    except Stalled as stalled:  # the phases reached so far, and why it stopped there
        figures = bootstrap_figures(platform, reader, time.time())
        return {**figures, "reached": False, "reason": str(stalled)}
    return bootstrap_figures(platform, reader, champion_at)


def bootstrap_figures(platform: Platform, reader: RunReader, champion_at: float) -> dict:
    """The bootstrap's phases up to ``champion_at`` and the peer's figures for each."""
    instance = reader.instance
    runs = [run for run in reader.runs() if run.finished and run.ended <= champion_at + 1]  # type: ignore[operator]
    chain = [run for run in runs if _in_chain(run)]
    others = [run for run in runs if not _in_chain(run)]
    training = [
        r for r in chain if TRAINING_SET.to_user_string() in r.tags["bench/selection"].split("+")
    ]
    training_requested = min((r.created for r in training), default=champion_at)
    ingested = [
        r.ended for r in chain if r.job == "ingestion_job" and r.created < training_requested
    ]
    milestones = [
        ("webserver up", platform.ui_up_at),
        ("baseline accepted", first_at(instance, TRANSACTION_BASELINE)),
        ("history ingested", max(ingested, default=None)),  # type: ignore[type-var]
        ("training_set", _last_success(instance, TRAINING_SET, champion_at)),
        ("candidate_model", first_at(instance, CANDIDATE_MODEL)),
        ("gate (evaluation_report)", first_at(instance, EVALUATION_REPORT)),
        ("release + analysis", first_at(instance, CANARY_ANALYSIS)),
        ("promotion (production_model)", first_at(instance, PRODUCTION_MODEL)),
    ]
    phases, previous, left = [], platform.started, list(chain)
    for name, at in milestones:
        if at is None:
            continue
        # A run ends a moment after its last materialization: it belongs to that phase.
        inside = [r for r in left if r.ended <= at + RUN_END_SLACK_S]  # type: ignore[operator]
        left = [r for r in left if r not in inside]
        figures = aggregate(inside)
        phases.append({
            "phase": name, "at_s": at - platform.started, "wall_s": at - previous,
            "runs": figures["runs"], "run_wall_s": figures["wall_s"],
            "compute_s": figures["compute_s"],
        })  # fmt: skip
        previous = at
    chain_figures, other_figures = aggregate(chain), aggregate(others)
    return {
        "reached": True,
        "seconds": champion_at - platform.started,
        "phases": phases,
        "chain": chain_figures,
        "others": other_figures,
        "failed_runs": [f"{r.label()}: {r.error or r.status}" for r in runs if not r.succeeded],
        "launch_per_run_s": chain_figures["launch_s"] / max(chain_figures["runs"], 1),
        "clock_started_s": _minus(platform.clock_started_at(), platform.started),
    }


def _in_chain(run: RunFacts) -> bool:
    recorded = set(run.materialized) | set(run.tags["bench/selection"].split("+"))
    return run.job == "ingestion_job" or bool(recorded & CHAIN)


def _last_success(instance: DagsterInstance, key: AssetKey, until: float) -> float | None:
    times = [r.timestamp for r in materializations(instance, key) if r.timestamp <= until]
    return times[-1] if times else None


def _minus(at: float | None, since: float) -> float | None:
    return None if at is None else at - since


def print_first_champion(title: str, figures: dict[str, Any]) -> None:
    """The phases next to the peer, or why no champion came."""
    if not figures.get("phases"):
        print(f"\n== {title} ==\nnot reached: {figures.get('reason')}")
        return
    rows = [
        [p["phase"], p["at_s"], p["wall_s"], p["runs"], p["run_wall_s"], p["compute_s"]]
        for p in figures["phases"]
    ]
    chain = figures["chain"]
    total = "first champion (total)" if figures["reached"] else "NO CHAMPION: stopped waiting"
    rows.append([total, figures["seconds"], figures["seconds"], chain["runs"], chain["wall_s"],
                 chain["compute_s"]])  # fmt: skip
    print_table(
        title,
        ["phase (ends with)", "at (s)", "phase wall (s)", "runs", "peer: run walls (s)",
         "peer: step compute (s)"],
        rows,
    )  # fmt: skip
    others = figures["others"]
    print(
        "Wall: from the supervisor's start (its creation of the Dagster and MLflow stores, "
        "before its children start, is in 'webserver up'). Peer: the chain's runs that ended in "
        "the phase, summed: their walls (RUN_STARTING -> RUN_SUCCESS, i.e. one after another "
        "without sensors or queue) and their steps' own compute (the chain in one process, no "
        "orchestration); a run recording the assets of several phases (candidate_model and "
        "evaluation_report) counts in the last. Launch per run (process start + code load): "
        f"{figures['launch_per_run_s']:.1f} s. Other runs in the meantime (LLM, online store): "
        f"{others['runs']}, {others['wall_s']:.0f} s of run wall. Failed runs: "
        f"{figures['failed_runs'] or 'none'}."
    )
    if not figures["reached"]:
        print(f"No first champion: {figures['reason']}")


# ---------------------------------------------------------------------------------------------
# 2. Drift onset -> retraining request -> new champion


def story(platform: Platform, reader: RunReader, scenario: Scenario, timeout: float) -> dict:
    """Wait for v2 to be promoted; the story's milestones after the drift's onset."""
    instance = reader.instance

    drift = next(e for e in scenario.events if e.kind == "concept_drift")
    onset = datetime.datetime.combine(drift.start, datetime.time(), tzinfo=datetime.UTC)
    watch_until = onset + datetime.timedelta(days=scenario.label_delay_days + 2)
    from_onset = drift.start.isoformat()

    def promoted(runs: list[RunFacts]) -> float | None:
        at = first_at(instance, PRODUCTION_MODEL, lambda r: metadata(r, "champion_version") == "2")
        if at is not None or platform.clock_started_at() is None:
            return at
        now = _SimulatedClock(platform, scenario).simulated(time.time())
        if now > watch_until and not any(
            (r.partition_key or "") >= from_onset
            for r in materializations(instance, MODEL_MONITORING_REPORT)
        ):
            raise Stalled(
                f"no model_monitoring_report of a day from {from_onset} by "
                f"{now:%Y-%m-%d %H:%M} simulated, so the drift cannot be detected; the "
                f"ingestion runs of those days: {_ingestion_summary(runs, from_onset)}"
            )
        return at

    try:
        promoted_at = wait_for(platform, reader, "v2 promoted (the story's end)", promoted, timeout)
    except Stalled as stalled:  # the milestones reached so far, and why it stopped there
        figures = story_milestones(platform, reader, scenario, None)
        return {**figures, "reached": False, "reason": str(stalled)}
    return story_milestones(platform, reader, scenario, promoted_at)


def story_milestones(
    platform: Platform, reader: RunReader, scenario: Scenario, promoted_at: float | None
) -> dict[str, Any]:
    """The story's milestones reached, in simulated days and wall seconds after the onset."""
    instance = reader.instance
    drift = next(e for e in scenario.events if e.kind == "concept_drift")
    onset = datetime.datetime.combine(drift.start, datetime.time(), tzinfo=datetime.UTC)
    clock = _SimulatedClock(platform, scenario)
    onset_real = clock.real(onset)
    requested = [
        r.created for r in reader.runs() if r.tags.get("dagster/sensor_name") == "retraining_sensor"
    ]

    def acted(record: EventLogRecord) -> bool:
        verdicts = metadata(record, "verdicts") or []
        return (record.partition_key or "") >= drift.start.isoformat() and (
            metadata(record, "champion_version") == "1"
            and any(v["level"] == "act" for v in verdicts)
        )

    milestones = [
        ("drift onset", onset_real),
        ("drift detected (first act report on v1)",
         first_at(instance, MODEL_MONITORING_REPORT, acted)),
        ("retraining requested", min(requested, default=None)),  # type: ignore[type-var]
        ("candidate v2 trained", first_at(
            instance, CANDIDATE_MODEL,
            lambda r: str(metadata(r, "registered_model") or "").endswith(" v2"))),
        ("v2 released on canary", first_at(
            instance, CANARY_RELEASE,
            lambda r: metadata(r, "mode") == "canary" and metadata(r, "candidate_version") == "2")),
        ("v2 promoted", promoted_at),
    ]  # fmt: skip
    floors = story_floors(scenario)
    rows = []
    for name, at in milestones:
        if at is None:
            continue
        floor = floors.get(name, {})
        rows.append({
            "milestone": name,
            "simulated_days": (clock.simulated(at) - onset).total_seconds() / 86_400,
            "wall_s": at - onset_real,
            "floor_simulated_days": floor.get("floor_simulated_days"),
            "floor_wall_s": floor.get("floor_wall_s"),
        })  # fmt: skip
    return {"reached": True, "milestones": rows, "days_per_minute": scenario.days_per_minute}


def story_floors(scenario: Scenario) -> dict[str, dict[str, float]]:
    """Per milestone, the policies' floor after the onset and its target, in days and wall s."""
    maturity = scenario.label_delay_days
    after_change = MonitoringPolicy(**scenario.monitoring).min_days_after_change
    soak_days = ReleasePolicy(**scenario.release).soak_hours / 24
    wall = 86_400 / (scenario.days_per_minute * 24 * 60)  # wall seconds per simulated day
    floors = {
        "drift onset": (0.0, 0.0),
        "retraining requested": (after_change + maturity, TARGET_RETRAINING_AFTER_FLOOR_DAYS),
        "v2 promoted": (after_change + maturity + soak_days, TARGET_NEW_CHAMPION_AFTER_FLOOR_DAYS),
    }
    return {
        name: {
            "floor_simulated_days": floor, "floor_wall_s": floor * wall,
            "target_simulated_days": floor + allowance,
            "target_wall_s": (floor + allowance) * wall,
        }
        for name, (floor, allowance) in floors.items()
    }  # fmt: skip


def _ingestion_summary(runs: list[RunFacts], since: str) -> str:
    """Each ingestion run of a day from ``since``: its status and what it scored and reported."""
    found = [r for r in runs if r.job == "ingestion_job" and (r.partition or "") >= since]
    return (
        "; ".join(
            f"{r.partition} {r.status}: "
            + (", ".join(f"no {a}" for a in _monitoring_missing(r)) or "scored and reported")
            for r in found
        )
        or "none"
    )


class _SimulatedClock:
    """The story's clock: simulated instants from real ones and back (resources/clock.py)."""

    def __init__(self, platform: Platform, scenario: Scenario):
        started = platform.clock_started_at()
        if started is None:
            raise Stalled("the scenario's clock never started (no start file)")
        self.started = started
        self.start = datetime.datetime.combine(scenario.start, datetime.time(), datetime.UTC)
        self.speed = scenario.days_per_minute * 24 * 60  # simulated seconds per real second

    def simulated(self, at: float) -> datetime.datetime:
        return self.start + datetime.timedelta(seconds=(at - self.started) * self.speed)

    def real(self, instant: datetime.datetime) -> float:
        return self.started + (instant - self.start).total_seconds() / self.speed


def print_story(figures: dict[str, Any]) -> None:
    """The story's milestones next to the policies' floor (those reached, if it stopped)."""
    if not figures.get("milestones"):
        print(f"\n== Drift onset -> new champion ==\nnot reached: {figures.get('reason')}")
        return
    rows = [
        [m["milestone"], m["simulated_days"], m["wall_s"],
         "-" if m["floor_simulated_days"] is None else m["floor_simulated_days"],
         "-" if m["floor_wall_s"] is None else m["floor_wall_s"]]
        for m in figures["milestones"]
    ]  # fmt: skip
    print_table(
        f"Drift onset -> retraining -> new champion (short scenario as written, "
        f"{figures['days_per_minute']:g} simulated days a minute)",
        ["milestone", "simulated days after onset", "wall s after onset",
         "peer: policy floor (days)", "peer: floor (wall s)"],
        rows,
    )  # fmt: skip
    print(
        "Policy floor: retraining is due once min_days_after_change days after the drift have "
        "matured labels (label_delay_days), detected on the onset day itself; the canary is "
        "promoted after soak_hours; no orchestration or compute time. Targets: the request "
        f"within {TARGET_RETRAINING_AFTER_FLOOR_DAYS:g} and the new champion within "
        f"{TARGET_NEW_CHAMPION_AFTER_FLOOR_DAYS:g} simulated day(s) of the floor."
    )
    if not figures.get("reached"):
        print(f"STOPPED before v2's promotion (the milestones reached): {figures['reason']}")


# ---------------------------------------------------------------------------------------------
# 3. One day's cycle: its ingestion run (scores and report included) and what follows it


def day_cycle(
    platform: Platform, reader: RunReader, scenario: Scenario, day: str, timeout: float
) -> dict[str, Any]:
    """Wait for ``day``'s cycle to finish; its runs, overhead per asset and landed -> done.

    A day whose ingestion run did not score and report it (left out of its selection, or
    skipped) is reported with the runs that came, marked incomplete, with what is missing.
    """

    def done(runs: list[RunFacts]) -> list[RunFacts] | None:
        ingest = _ingestion_run(runs, day)
        if ingest is not None and ingest.failed:
            raise Stalled(f"{day}'s ingestion run failed: {ingest.error or ingest.status}")
        return _cycle_runs(runs, day)

    found = wait_for(platform, reader, f"{day} ingested, scored, reported, loaded online",
                     done, timeout)  # fmt: skip
    return cycle_figures(platform, scenario, day, found, reader.runs())


def _ingestion_run(runs: list[RunFacts], day: str) -> RunFacts | None:
    """The day's ingestion run: the one ingestion_sensor requested (one a day: its run key)."""
    of_day = [r for r in runs if r.job == "ingestion_job" and r.partition == day]
    return next(
        (r for r in of_day if r.tags.get("dagster/sensor_name") == "ingestion_sensor"),
        of_day[0] if of_day else None,
    )


def _other_ingestion_runs(runs: list[RunFacts], day: str, ingest: RunFacts) -> list[str]:
    """The day's other ingestion runs (another sensor's request), as run id, trigger, span."""
    return [
        f"{r.run_id} ({r.tags.get('dagster/sensor_name', 'no sensor')}, "
        f"flywheel/trigger={r.tags.get('flywheel/trigger', '-')}, {r.status}, "
        f"wall {r.wall:.1f} s)"
        for r in runs
        if r.job == "ingestion_job" and r.partition == day and r.run_id != ingest.run_id
    ]


def _cycle_runs(runs: list[RunFacts], day: str, canary: bool = False) -> list[RunFacts] | None:
    """The day's ingestion run, then the runs that follow it, once all have ended.

    ``online_features``: the first run automation created after the run recorded the day's
    feature rows (it may start while the same run still scores and reports the day);
    ``canary_analysis`` (with ``canary``): the first created after the ingestion run ended.
    """
    ingest = _ingestion_run(runs, day)
    if ingest is None or not ingest.succeeded or ingest.ended is None:
        return None
    features_at = max(
        (ingest.materialized_at[a] for a in DAY_FEATURES if a in ingest.materialized_at),
        default=ingest.created,
    )
    online = next(
        (r for r in runs if r.created >= features_at and "online_features" in _selection(r)),
        None,
    )
    needed = [ingest, online]
    if canary:
        needed.append(
            next(
                (r for r in runs
                 if r.created >= ingest.ended and "canary_analysis" in _selection(r)),
                None,
            )
        )  # fmt: skip
    if any(run is None or not run.finished for run in needed):
        return None
    return needed  # type: ignore[return-value]


def _selection(run: RunFacts) -> set[str]:
    return set(run.materialized) | set(run.tags["bench/selection"].split("+"))


def _monitoring_missing(ingest: RunFacts) -> list[str]:
    """The day's scores and report its ingestion run did not record, and why."""
    selected = set(ingest.tags["bench/selection"].split("+"))
    missing = []
    for asset in DAY_MONITORING:
        if asset in ingest.materialized:
            continue
        if selected != {""} and asset not in selected:
            missing.append(f"{asset} (left out of the run's selection)")
        else:
            missing.append(f"{asset} (selected, not recorded)")
    return missing


def cycle_figures(
    platform: Platform,
    scenario: Scenario,
    day: str,
    runs: list[RunFacts],
    every_run: list[RunFacts],
) -> dict[str, Any]:
    """The day's runs (ingestion first), their overhead, and the times from its landing.

    ``every_run``: the instance's runs, for the day's other ingestion runs (not in the figures:
    another sensor's request of the same day, which the cycle did not need).
    """
    clock = _SimulatedClock(platform, scenario)
    landed_sim = datetime.datetime.combine(
        datetime.date.fromisoformat(day) + datetime.timedelta(days=1), datetime.time(),
        datetime.UTC,
    ) + LANDING_DELAY  # fmt: skip
    landed = clock.real(landed_sim)
    ingest, online = runs[0], runs[1]
    analysis = runs[2] if len(runs) > 2 else None
    done = max(run.ended for run in runs)  # type: ignore[type-var]
    per_run = [
        {
            "run": run.label(), "created_s": run.created - landed,
            "queued_s": (run.starting or run.created) - run.created, "launch_s": run.launch,
            "wall_s": run.wall, "compute_s": run.compute, "outputs": run.outputs,
            "overhead_per_output_s": run.overhead / run.outputs if run.outputs else math.nan,
            "done_s": run.ended - landed,  # type: ignore[operator]
        }
        for run in runs
    ]  # fmt: skip
    missing = _monitoring_missing(ingest)
    figures: dict[str, Any] = {
        "reached": True,
        "complete": not missing,
        "day": day,
        "rows_per_day": scenario.rows_per_day,
        "runs": per_run,
        "total": aggregate(runs),
        "landed_to_requested_s": ingest.created - landed,
        "landed_to_reported_s": ingest.ended - landed,  # type: ignore[operator]
        "landed_to_online_s": online.ended - landed,  # type: ignore[operator]
        "landed_to_canary_s": None if analysis is None else analysis.ended - landed,  # type: ignore[operator]
        "landed_to_done_s": done - landed,
        "requested_to_done_s": done - ingest.created,
    }
    if missing:
        figures["missing"] = missing
        figures["reason"] = f"{day}'s ingestion run recorded no {', no '.join(missing)}"
    figures["other_ingestion_runs"] = _other_ingestion_runs(every_run, day, ingest)
    return figures


def print_cycle(title: str, figures: dict[str, Any]) -> None:
    """A day's runs: queue, launch, wall, compute and overhead per asset."""
    if not figures.get("reached"):
        print(f"\n== {title} ==\nnot reached: {figures.get('reason')}")
        return
    rows = [
        [r["run"], r["created_s"], r["queued_s"], r["launch_s"], r["wall_s"], r["compute_s"],
         r["wall_s"] - r["compute_s"], r["outputs"], r["overhead_per_output_s"], r["done_s"]]
        for r in figures["runs"]
    ]  # fmt: skip
    total = figures["total"]
    rows.append(["all runs of the day", "", total["total_s"] - total["wall_s"], total["launch_s"],
                 total["wall_s"], total["compute_s"], total["overhead_s"], total["outputs"],
                 total["overhead_per_output_s"], figures["landed_to_done_s"]])  # fmt: skip
    print_table(
        title,
        ["run", "created (s after landing)", "queued (s)", "launch (s)", "wall (s)",
         "peer: step compute (s)", "overhead (s)", "assets+checks", "overhead / asset (s)",
         "done (s after landing)"],
        rows,
    )  # fmt: skip
    canary = figures.get("landed_to_canary_s")
    print(
        f"Landed {figures['day']} (+1 day {LANDING_DELAY} on the platform's clock) -> ingestion "
        f"requested {figures['landed_to_requested_s']:.1f} s -> ingested, scored and reported "
        f"{figures['landed_to_reported_s']:.1f} s -> online store loaded "
        f"{figures['landed_to_online_s']:.1f} s"
        + ("" if canary is None else f" -> canary analysed {canary:.1f} s (ingest -> canary)")
        + f" (from the request to the last run done: {figures['requested_to_done_s']:.1f} s). "
        f"With the queue, the overhead is {total['overhead_with_queue_per_output_s']:.2f} s per "
        "asset. Wall: RUN_STARTING -> RUN_SUCCESS; launch: RUN_STARTING -> RUN_START (the run's "
        "process and code load)."
    )
    if figures.get("other_ingestion_runs"):
        print(f"Other ingestion runs of {figures['day']} (not counted above): "
              f"{'; '.join(figures['other_ingestion_runs'])}.")  # fmt: skip
    if not figures.get("complete", True):
        print(f"INCOMPLETE (figures of the runs that came): {figures['reason']}")


def canary_day(platform: Platform, reader: RunReader, scenario: Scenario) -> dict[str, Any]:
    """The cycle of the first day ingested while v2 was on canary, its next analysis included.

    Only runs created before v2's promotion count: the analysis must be of v2 on canary.
    """
    instance = reader.instance
    released = first_at(
        instance,
        CANARY_RELEASE,
        lambda r: metadata(r, "mode") == "canary" and metadata(r, "candidate_version") == "2",
    )
    if released is None:
        return {"reached": False, "reason": "v2 was never released on canary"}
    promoted = first_at(
        instance, PRODUCTION_MODEL, lambda r: metadata(r, "champion_version") == "2"
    )
    runs = [r for r in reader.runs() if promoted is None or r.created < promoted]
    days = sorted({
        r.partition for r in runs
        if r.job == "ingestion_job" and r.succeeded and r.created > released and r.partition
    })  # fmt: skip
    for day in days:
        found = _cycle_runs(runs, day, canary=True)
        if found is not None:
            return cycle_figures(platform, scenario, day, found, runs)
    return {
        "reached": False,
        "reason": f"no day ingested while v2 was on canary ({', '.join(days) or 'none'}) was "
        "followed by a canary_analysis run before v2's promotion",
    }


# ---------------------------------------------------------------------------------------------
# Driving the platforms


def run_platform(
    root: Path,
    project: Path,
    scenario_path: Path | None,
    steps: Callable[[Platform, RunReader], None],
) -> dict[str, float]:
    """Start the platform, run ``steps`` on it, stop it; the load average around it."""
    load_before = os.getloadavg()[0]
    with supervised(root, project, scenario_path) as platform:
        readers: list[RunReader] = []
        try:
            steps(platform, open_instance(platform, readers))
        finally:
            for reader in readers:
                reader.instance.dispose()
            progress(f"stopping the platform ({time.time() - platform.started:.0f} s after start)")
    return {"load_before": load_before, "load_after": os.getloadavg()[0]}


def attempt(figures: dict[str, Any], key: str, measure: Callable[[], dict[str, Any]]) -> bool:
    """``figures[key] = measure()``; on Stalled, what went wrong instead. Whether it worked."""
    try:
        figures[key] = measure()
        return True
    except Stalled as stalled:
        progress(f"{key}: {stalled}", end=False)
        figures[key] = {**figures.get(key, {}), "reached": False, "reason": str(stalled)}
        return False


def main() -> None:
    """Measure what the options ask for, print the tables and the JSON line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true",
        help="the short scenario's bootstrap (without events) and its first day at "
        "--rows-per-day only",
    )  # fmt: skip
    parser.add_argument("--rows-per-day", type=int, default=10_000, help="the short scenario's")
    parser.add_argument("--volume-rows", type=int, default=100_000, help="the 100k day's")
    parser.add_argument(
        "--project", type=Path, default=PROJECT_ROOT,
        help="the checkout whose supervisor runs (default: this one)",
    )  # fmt: skip
    parser.add_argument("--no-real-world", action="store_true", help="skip make dev's real world")
    parser.add_argument("--no-volume", action="store_true", help="skip the 100k-payment day")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = parser.parse_args()
    began, load_start = time.time(), os.getloadavg()
    print(f"load average at start (1, 5, 15 min): {load_start} on {os.cpu_count()} cores")
    result: dict[str, Any] = {"quick": args.quick, "load_average_start": load_start}
    tmp = Path(tempfile.mkdtemp(prefix="bench-loop-", dir="/tmp"))
    progress(f"working in {tmp}", end=False)
    try:
        measure_all(args, tmp, result)
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    result["load_average_end"] = os.getloadavg()
    result["elapsed_s"] = time.time() - began
    report(result)


def measure_all(args: argparse.Namespace, tmp: Path, result: dict[str, Any]) -> None:
    """The platforms the options ask for, one after the other (never two at once)."""
    project = args.project.resolve()
    # One day timed alone: the short scenario without events, slowed so that the next day lands
    # two minutes after the one timed (its start, ingested by the platform's clock).
    if args.quick:
        # One platform: the short scenario's bootstrap, then its first day.
        path, scenario = write_scenario(
            tmp, "cycle", rows_per_day=args.rows_per_day, days_per_minute=0.5, events=[]
        )
        result["first_champion_scenario"] = _describe(scenario)
        progress(f"the short scenario at {args.rows_per_day:,} payments a day ({path})")
        result["load_cycle"] = run_platform(
            tmp / "cycle", project, path, _bootstrap_then_day(result, "first_champion",
                                                               "cycle_small", scenario),
        )  # fmt: skip
        return
    if not args.no_volume:
        path, scenario = write_scenario(
            tmp, "volume", rows_per_day=args.volume_rows, label_delay_days=1,
            days_per_minute=0.5, events=[],
            description=f"{args.volume_rows:,} payments a day, no event: one ordinary day timed",
        )  # fmt: skip
        progress(f"{args.volume_rows:,} payments a day ({path})")
        result["load_volume"] = run_platform(
            tmp / "volume", project, path,
            _bootstrap_then_day(result, "volume_first_champion", "cycle_volume", scenario),
        )  # fmt: skip
    path, scenario = write_scenario(tmp, "story", rows_per_day=args.rows_per_day)
    result["first_champion_scenario"] = _describe(scenario)
    result["story_targets"] = story_floors(scenario)

    def on_story(platform: Platform, reader: RunReader) -> None:
        result["first_champion"] = first_champion(platform, reader, 2400)
        if not result["first_champion"]["reached"]:
            return
        if attempt(result, "story", lambda: story(platform, reader, scenario, 3600)):
            result["cycle_canary"] = canary_day(platform, reader, scenario)
        note_clock_start(result["first_champion"], platform)

    progress(f"the short scenario's story at {args.rows_per_day:,} payments a day ({path})")
    result["load_story"] = run_platform(tmp / "story", project, path, on_story)
    if not args.no_real_world:

        def on_real(platform: Platform, reader: RunReader) -> None:
            result["real_world_first_champion"] = first_champion(platform, reader, 3600)

        progress("make dev's real world (no scenario)")
        result["load_real_world"] = run_platform(tmp / "real", project, None, on_real)


def _describe(scenario: Scenario) -> dict[str, Any]:
    return {
        "start": scenario.start.isoformat(),
        "rows_per_day": scenario.rows_per_day,
        "label_delay_days": scenario.label_delay_days,
        "days_per_minute": scenario.days_per_minute,
        "events": [e.kind for e in scenario.events],
    }


def _bootstrap_then_day(
    result: dict[str, Any], champion_key: str, cycle_key: str, scenario: Scenario
) -> Callable[[Platform, RunReader], None]:
    """Steps on a platform: the first champion, then the cycle of the scenario's start day."""

    def steps(platform: Platform, reader: RunReader) -> None:
        result[champion_key] = first_champion(platform, reader, 3600)
        if result[champion_key]["reached"]:
            day = scenario.start.isoformat()
            result[cycle_key] = {"rows_per_day": scenario.rows_per_day, "day": day}
            attempt(result, cycle_key, lambda: day_cycle(platform, reader, scenario, day, 900))
        note_clock_start(result[champion_key], platform)

    return steps


def note_clock_start(figures: dict[str, Any], platform: Platform) -> None:
    """When the scenario's clock started (s after the supervisor's start), read once it has."""
    figures["clock_started_s"] = _minus(platform.clock_started_at(), platform.started)


def report(result: dict[str, Any]) -> None:
    """The tables, the targets and the JSON line."""
    scenario = result.get("first_champion_scenario", {})
    print_first_champion(
        f"Empty instance -> first champion (short scenario from {scenario.get('start')}, "
        f"{scenario.get('rows_per_day', 0):,} payments a day, {scenario.get('label_delay_days')}"
        f"-day labels, events: {', '.join(scenario.get('events', [])) or 'none'})",
        result.get("first_champion", {"reason": "not measured"}),
    )
    if "real_world_first_champion" in result:
        print_first_champion(
            "Empty instance -> first champion (make dev's real world: 10,000 a day, 75 days)",
            result["real_world_first_champion"],
        )
    if "volume_first_champion" in result:
        print_first_champion(
            "Empty instance -> first champion (100k payments a day, 1-day labels: 46 days)",
            result["volume_first_champion"],
        )
    if "story" in result:
        print_story(result["story"])
    for key, title in (
        ("cycle_small", "One day's cycle after the bootstrap"),
        ("cycle_volume", "One day's cycle after the bootstrap"),
        ("cycle_canary", "A day's cycle while v2 is on canary (story)"),
    ):
        if key in result:
            figures = result[key]
            rows_per_day = figures.get("rows_per_day") or 0
            print_cycle(f"{title}: {figures.get('day')}, {rows_per_day:,} payments", figures)
    result["targets"] = targets(result)
    print_table(
        "Targets",
        ["figure", "measured", "target", "met"],
        [[t["figure"], t["measured"], t["target"], t["met"]] for t in result["targets"]],
    )
    print(f"load average at end: {result['load_average_end']}; took {result['elapsed_s']:.0f} s")
    print(json.dumps(rounded(result), allow_nan=False))


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each figure with a target: measured, target, met (an incomplete figure is missed)."""
    out = []

    def add(figure: str, measured: float | None, target: float, complete: bool = True) -> None:
        met = complete and measured is not None and not math.isnan(measured) and measured <= target
        out.append({"figure": figure, "measured": "-" if measured is None else measured,
                    "target": target, "met": met})  # fmt: skip

    for key, name in (
        ("first_champion", "first champion, short scenario (s)"),
        ("volume_first_champion", "first champion, 100k a day (s)"),
        ("real_world_first_champion", "first champion, make dev real world (s)"),
    ):
        if key in result:
            add(name, result[key].get("seconds") if result[key].get("reached") else None,
                TARGET_FIRST_CHAMPION_S)  # fmt: skip
    for key in ("cycle_volume", "cycle_small", "cycle_canary"):
        cycle = result.get(key)
        if not cycle:
            continue
        rows = cycle.get("rows_per_day") or 0
        total = cycle.get("total", {})
        complete = cycle.get("complete", False)
        partial = "" if complete else ", INCOMPLETE" if cycle.get("reached") else ", NOT REACHED"
        add(f"overhead per asset, one day at {rows:,} ({key}{partial}) (s)",
            total.get("overhead_per_output_s"), TARGET_OVERHEAD_PER_ASSET_S, complete)  # fmt: skip
        if key == "cycle_canary":
            add(f"ingest -> canary: landed -> canary_analysis done, at {rows:,}{partial} (s)",
                cycle.get("landed_to_canary_s"), TARGET_DAY_CYCLE_S, complete)  # fmt: skip
        else:
            add(f"landed -> day done (no canary), at {rows:,} ({key}{partial}) (s)",
                cycle.get("landed_to_done_s"), TARGET_DAY_CYCLE_S, complete)  # fmt: skip
    story_targets = result.get("story_targets")
    if story_targets:
        reached = {m["milestone"]: m for m in result.get("story", {}).get("milestones", [])}
        for milestone, name in (
            ("retraining requested", "drift -> retraining requested"),
            ("v2 promoted", "drift -> new champion (v2 promoted)"),
        ):
            measured, target = reached.get(milestone, {}), story_targets[milestone]
            add(f"{name} (simulated days)", measured.get("simulated_days"),
                target["target_simulated_days"])  # fmt: skip
            add(f"{name} (wall s)", measured.get("wall_s"), target["target_wall_s"])
    return out


if __name__ == "__main__":
    main()
