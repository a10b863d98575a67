"""Benchmark of the training stage: our assets against bare LightGBM on the same training set.

What is measured, and why:

* **Data**: simulated payments written into a temporary lake as the ingestion assets write them,
  features computed with ``platform_assets/features/engineering.py`` and the training set built
  by the point-in-time join of ``fraud_model_v2`` (``engine="polars"``), as
  ``training_set`` builds it; the latest 1M and 3M labelled rows are the two sizes.
* **Bare LightGBM (the peer)**: ``lgb.Dataset`` + ``lgb.train`` on float32 numpy arrays built
  beforehand (not timed), with exactly the parameters, validation rows, early stopping and
  metric that ``candidate_model`` uses. This is the work no platform can avoid.
* **Ours**: ``dagster.materialize`` of the chain from the training set to the champion
  (``candidate_model``, ``evaluation_report`` and its gate check, ``canary_release``,
  ``canary_analysis``, ``production_model``) on an ephemeral instance and a fresh MLflow store
  (SQLite + artifacts), reading the training set from the lake through the IO manager. Twice
  per store: the first model (scored against the baseline, released directly and promoted),
  then a retrain on the same rows scored against that champion, as every later retraining is
  (the gate blocks it: nothing gained, so nothing is released). The store's one-time creation
  (schema migrations) happens before the timing and is printed apart, as a deployed store
  exists already.
* **The same treatment**: both sides are warmed up once (one untimed run each, at the first
  size), then run ``--repeats`` times at each size, interleaved (the order rotates every round,
  so a neighbour's load on the shared machine falls on both), and compared by their medians.
  Library imports are warmed before anything; their cold cost in a fresh interpreter (paid
  once by every run's process under ``dagster dev``) is printed apart, ours next to the
  peer's.
* **Overhead** = ours - the holdout's scoring - the peer's bare training (median of each),
  as a share of the peer's bare training. Scoring the holdout with the models the gate compares
  (LightGBM's predict, timed inside ``evaluation_report``: the candidate, and the champion when
  there is one) is the evaluation's own work, reported apart; everything else counts: loading
  the training set, the time split and matrices, MLflow tracking, model logging and
  registration, metrics, slices, plots, reports, release and promotion, Dagster's bookkeeping,
  and any difference between the boosting inside our run and the peer's. Target: overhead <=
  10 % of the peer's bare training at 3M rows (1M is reported against the same yardstick).
  The overhead is split by where it goes (medians per part): boosting inside ours minus the
  peer's, ``candidate_model`` besides its boosting, ``evaluation_report`` besides the scoring,
  the gate check, the release steps, Dagster's run bookkeeping (wall minus the steps). Inside
  the two big steps, the platform's own functions are timed where they are called
  (``Stopwatch``: a timer around each, nothing else changed) to show which part costs what:
  loading the training set, hashing it, the split, the matrices, the monitoring reference,
  MLflow logging and registration, loading boosters, metrics and slices, plots and Evidently.
  What this bench reported before (ours minus the boosting inside our own run, divided by that
  boosting) is printed from the same runs for comparison.
* Peak RSS (``VmHWM`` reset before each measurement) of the peer and of ours.

Run from the project root: ``.venv/bin/python bench/training.py`` (35 minutes with 3 repeats on
two cores that other jobs were using too; LightGBM's two threads slow down badly when they wait
for a core, so the load average as each run starts is printed with it) or ``--quick`` (100k and
300k rows, low gate floors so the small first model is promoted, a few minutes). Tables go to
stdout, progress to stderr; the last line of stdout is one JSON object.
"""

import argparse
import collections
import datetime
import functools
import importlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightgbm as lgb
import polars as pl
from dagster import AssetSelection, DagsterEventType, DagsterInstance, materialize
from helpers.datasets import build_training_set
from helpers.memory import run_measured
from helpers.output import progress, rounded
from helpers.tables import print_table
from helpers.timing import same_treatment

from platform_assets.common.keys import TRAINING_SET
from platform_assets.definitions import stage_assets
from platform_assets.features.labelling import LABEL
from platform_assets.model import artifacts, candidate_model, evaluation_report
from platform_assets.model.recipe import (
    Hyperparameters,
    calibrated_log_loss,
    default_positive_weight,
    feature_matrix,
    lightgbm_params,
    model_features,
    time_split,
)
from resources.environments import build_resources
from resources.feature_store import FeatureStoreResource
from resources.lake import Lake, LakeIOManager
from resources.model_registry import ModelRegistry

FIRST_DAY = datetime.date(2026, 3, 1)
TARGET_OVERHEAD = 0.10
TARGET_ROWS = 3_000_000
CHAIN = AssetSelection.assets(
    "candidate_model", "evaluation_report", "canary_release", "canary_analysis", "production_model"
)
GATE_STEP = "evaluation_report_candidate_beats_champion"
RELEASE_STEPS = ("canary_release", "canary_analysis", "production_model")
FULL = {"sizes": (1_000_000, 3_000_000), "rows_per_day": 250_000, "days": 20}
QUICK = {"sizes": (100_000, 300_000), "rows_per_day": 30_000, "days": 18}
# Model quality does not change what the chain costs: low floors let a small first model pass,
# so a quick run times the same steps (release, promotion) as a full one.
LOW_FLOORS = {"pr_auc": 0.01, "roc_auc": 0.6}
OUR_IMPORTS = ("evidently", "matplotlib.pyplot", "mlflow.lightgbm", "sklearn.metrics", "lightgbm")
PEER_IMPORTS = ("lightgbm",)
SCENARIOS = ("first", "retrain")


class Stopwatch:
    """Seconds spent in some of the platform's functions, summed per label while runs go on.

    ``install`` replaces each function by a wrapper that times the original and adds the time
    to its label (a label may depend on the call, e.g. which step loads an input); nothing
    else changes. ``lap`` returns the sums since the previous lap.
    """

    def __init__(self):
        self.seconds: collections.Counter[str] = collections.Counter()

    def install(self, owner: Any, name: str, label: str | Any) -> None:
        """Time ``owner.name`` under ``label`` (a string, or a function of the call's args)."""
        original = getattr(owner, name)
        seconds = self.seconds

        @functools.wraps(original)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                key = label if isinstance(label, str) else label(*args, **kwargs)
                seconds[key] += time.perf_counter() - start

        setattr(owner, name, timed)

    def lap(self) -> dict[str, float]:
        """The seconds per label since the last lap."""
        out = dict(self.seconds)
        self.seconds.clear()
        return out


# Which part of candidate_model and evaluation_report costs what, timed where it is called.
PARTS = (
    (
        LakeIOManager,
        "load_input",
        lambda self, context: f"{context.op_def.name}: load training set",
    ),
    (Lake, "keep_by_content", "candidate_model: hash training set (keep_by_content)"),
    (candidate_model, "time_split", "candidate_model: time split"),
    (candidate_model, "train", "candidate_model: train (matrices, Dataset, boosting)"),
    (candidate_model, "holdout", "candidate_model: holdout rows, scored for monitoring"),
    (candidate_model, "fraud_scores", "candidate_model: holdout rows, scored for monitoring"),
    (candidate_model, "training_reference", "candidate_model: monitoring reference"),
    (candidate_model, "reference_sample", "candidate_model: monitoring reference"),
    (candidate_model, "log_candidate", "candidate_model: MLflow logging, log_model, registration"),
    (ModelRegistry, "load_booster", "evaluation_report: load boosters from MLflow"),
    (evaluation_report, "_evaluation_window", "evaluation_report: holdout window and rows"),
    (evaluation_report, "_unseen_rows", "evaluation_report: holdout window and rows"),
    (evaluation_report, "_judge", "evaluation_report: metrics, slices, gate"),
    (artifacts, "write_evaluation_artifacts", "evaluation_report: plots and Evidently report"),
    (evaluation_report, "log_evaluation", "evaluation_report: MLflow logging of the evaluation"),
)
STOPWATCH = Stopwatch()


class Peer:
    """Bare LightGBM on arrays prepared once (not timed), with candidate_model's settings."""

    def __init__(self, frame: pl.DataFrame, features: list[str]):
        self.config = Hyperparameters()
        split = time_split(frame, self.config.validation_fraction, self.config.holdout_fraction)
        self.weight = default_positive_weight(split.train[LABEL])
        self.features = features
        self.x, self.y = feature_matrix(split.train, features), split.train[LABEL].to_numpy()
        self.vx = feature_matrix(split.validation, features)
        self.vy = split.validation[LABEL].to_numpy()

    def boost(self) -> lgb.Booster:
        """``lgb.Dataset`` + ``lgb.train``: the work no platform can avoid."""
        train_set = lgb.Dataset(self.x, self.y, feature_name=self.features)
        return lgb.train(
            lightgbm_params(self.config, self.features, self.weight),
            train_set,
            num_boost_round=self.config.max_rounds,
            valid_sets=[train_set.create_valid(self.vx, self.vy)],
            feval=calibrated_log_loss(self.weight),
            callbacks=[lgb.early_stopping(self.config.early_stopping_rounds, verbose=False)],
        )

    def __call__(self) -> dict[str, Any]:
        """One measured training: seconds, peak RSS, rounds, the machine's load as it starts."""
        load = os.getloadavg()[0]
        booster, figures = run_measured(self.boost)
        return {**figures, "rounds": booster.best_iteration, "load": load}


class Ours:
    """The chain through Dagster on a fresh MLflow store per call: first model, then a retrain."""

    def __init__(
        self, frame: pl.DataFrame, feature_store: FeatureStoreResource, root: Path, quick: bool
    ):
        self.frame, self.feature_store, self.root = frame, feature_store, root
        self.run_config = (
            {"ops": {"evaluation_report": {"config": {"floors": LOW_FLOORS}}}} if quick else None
        )
        self.calls = itertools.count()

    def __call__(self) -> dict[str, Any]:
        """The first model and its retrain, each one measured materialization."""
        folder = self.root / f"ours-{self.frame.height}-{next(self.calls)}"
        resources = build_resources("local", data_dir=folder)
        resources["feature_store"] = self.feature_store
        # Stored as the training_set asset stores it: current, and kept under its content hash.
        resources["lake"].write_by_content(self.frame, TRAINING_SET)
        # A deployed store exists already: its one-time creation is not a run's.
        started = time.perf_counter()
        resources["model_registry"].ensure_experiment()
        store_creation_s = time.perf_counter() - started
        instance = DagsterInstance.ephemeral()
        first = self.chain(resources, instance)
        retrain = self.chain(resources, instance)
        if first["reference"] != "baseline" or retrain["reference"] == "baseline":
            raise RuntimeError(
                f"expected a first model against the baseline, then a retrain against it as "
                f"champion; got {first['reference']} ({first['verdict']}), then "
                f"{retrain['reference']}"
            )
        return {"first": first, "retrain": retrain, "store_creation_s": store_creation_s}

    def chain(self, resources: dict[str, Any], instance: DagsterInstance) -> dict[str, Any]:
        """One materialization of the chain; step times from Dagster's events."""
        STOPWATCH.lap()
        load = os.getloadavg()[0]
        result, figures = run_measured(
            lambda: materialize(
                stage_assets(),
                selection=CHAIN,
                resources=resources,
                instance=instance,
                run_config=self.run_config,
                # A blocked candidate fails the run by design; its steps' times still count.
                raise_on_error=False,
            )
        )
        parts = STOPWATCH.lap()
        if not result.asset_materializations_for_node("evaluation_report"):
            raise RuntimeError("training or evaluation failed")
        starts: dict[str, float] = {}
        steps: dict[str, float] = {}
        for event in instance.all_logs(result.run_id):
            step, kind = event.step_key, event.dagster_event_type
            if kind == DagsterEventType.STEP_START and step:
                starts[step] = event.timestamp
            elif kind in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE) and step:
                steps[step] = event.timestamp - starts[step]
        (candidate,) = result.asset_materializations_for_node("candidate_model")
        (report,) = result.asset_materializations_for_node("evaluation_report")
        metadata = {key: value.value for key, value in report.metadata.items()}
        holdout_rows = metadata["holdout_rows"]
        promoted = bool(result.asset_materializations_for_node("production_model"))
        return {
            **figures,
            "load": load,
            "steps": steps,
            "parts": parts,
            "boosting_s": candidate.metadata["boosting_seconds"].value,
            "rounds": candidate.metadata["best_iteration"].value,
            "reference": metadata["reference"],
            "verdict": metadata["verdict"],
            "promoted": promoted,
            "holdout_rows": holdout_rows,
            # LightGBM's predict of the holdout, for every model the gate scores (timed inside
            # evaluation_report, reported per 10,000 rows).
            "scoring_s": sum(
                ms * holdout_rows / 10_000 / 1000
                for key, ms in metadata.items()
                if key.startswith("scoring ms per 10k rows")
            ),
        }


def cold_imports(modules: tuple[str, ...]) -> float:
    """Seconds a fresh interpreter spends importing ``modules``."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {', '.join(modules)}"], check=True)
    return time.perf_counter() - start


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Build the data once, then measure the peer and ours at every size, the same way."""
    plan = QUICK if args.quick else FULL
    out: dict[str, Any] = {"sizes": [], "repeats": args.repeats}
    out["cold_imports_s"] = {"ours": cold_imports(OUR_IMPORTS), "peer": cold_imports(PEER_IMPORTS)}
    for module in OUR_IMPORTS:  # warm, so the first size does not pay them inside its figures
        importlib.import_module(module)
    for owner, name, label in PARTS:
        STOPWATCH.install(owner, name, label)
    with tempfile.TemporaryDirectory(prefix="bench-training-", dir="/tmp") as tmp:
        full, feature_store, _, _ = build_training_set(
            Path(tmp), FIRST_DAY, plan["rows_per_day"], plan["days"], max(plan["sizes"])
        )
        features = model_features(Hyperparameters(), feature_store.feature_names())
        for index, rows in enumerate(plan["sizes"]):
            frame = full.tail(rows)
            warmups = 1 if index == 0 else 0
            progress(
                f"{rows:,} rows: bare LightGBM and our chain, {warmups} warm-up + "
                f"{args.repeats} interleaved rounds"
            )
            timed = same_treatment(
                {
                    "bare": Peer(frame, features),
                    "ours": Ours(frame, feature_store, Path(tmp), args.quick),
                },
                args.repeats,
                warmups=warmups,
            )
            out["sizes"].append(
                {
                    "rows": frame.height,
                    "frauds": int(frame[LABEL].sum()),
                    "bare": timed["bare"].results,
                    "ours": timed["ours"].results,
                }
            )
    return out


def median(values: list[float]) -> float:
    """The median of ``values``."""
    return statistics.median(values)


def summarize(size: dict[str, Any], scenario: str) -> dict[str, Any]:
    """One size and scenario: medians of both sides, the overhead and where it goes."""
    bare = median([run["seconds"] for run in size["bare"]])
    runs = [pair[scenario] for pair in size["ours"]]

    def med(part) -> float:
        return median([part(run) for run in runs])

    wall = med(lambda run: run["seconds"])
    scoring = med(lambda run: run["scoring_s"])
    counted = med(lambda run: run["seconds"] - run["scoring_s"])
    overhead = counted - bare
    boosting = med(lambda run: run["boosting_s"])
    return {
        "rows": size["rows"],
        "frauds": size["frauds"],
        "scenario": scenario,
        "reference": runs[0]["reference"],
        "gate": runs[0]["verdict"],
        "promoted": runs[0]["promoted"],
        "rounds": runs[0]["rounds"],
        "peer_rounds": size["bare"][0]["rounds"],
        "repeats": len(runs),
        "bare_lightgbm_s": bare,
        "bare_lightgbm_runs_s": [run["seconds"] for run in size["bare"]],
        "ours_total_s": wall,
        "ours_total_runs_s": [run["seconds"] for run in runs],
        "boosting_inside_ours_runs_s": [run["boosting_s"] for run in runs],
        # The machine's 1-minute load average as each run started (2 cores: above 2, others
        # were computing too, and LightGBM's two threads wait for the cores).
        "bare_load_runs": [run["load"] for run in size["bare"]],
        "ours_load_runs": [run["load"] for run in runs],
        "holdout_rows": runs[0]["holdout_rows"],
        "holdout_scoring_s": scoring,
        "ours_without_scoring_s": counted,
        "overhead_s": overhead,
        "overhead_pct": overhead / bare * 100,
        "target_met": overhead <= TARGET_OVERHEAD * bare,
        # Where the overhead goes (medians of each part; they add up to about the overhead).
        "boosting_inside_ours_s": boosting,
        "boosting_inside_ours_minus_bare_s": boosting - bare,
        "candidate_model_besides_boosting_s": med(
            lambda run: run["steps"]["candidate_model"] - run["boosting_s"]
        ),
        "evaluation_report_besides_scoring_s": med(
            lambda run: run["steps"]["evaluation_report"] - run["scoring_s"]
        ),
        "gate_check_s": med(lambda run: run["steps"].get(GATE_STEP, 0.0)),
        "release_and_promotion_s": med(
            lambda run: sum(run["steps"].get(step, 0.0) for step in RELEASE_STEPS)
        ),
        "dagster_run_s": med(lambda run: run["seconds"] - sum(run["steps"].values())),
        # What this bench reported before: ours minus the boosting inside ours, over that boosting.
        "old_definition_overhead_pct": med(
            lambda run: (run["seconds"] - run["boosting_s"]) / run["boosting_s"] * 100
        ),
        "parts": {label: med(lambda run, label=label: part(run, label)) for label in labels(runs)},
        "mlflow_store_creation_s": median([pair["store_creation_s"] for pair in size["ours"]]),
        "bare_peak_rss_mb": max(run["peak_mb"] for run in size["bare"]),
        "ours_peak_rss_mb": max(run["peak_mb"] for run in runs),
    }


TRAIN = "candidate_model: train (matrices, Dataset, boosting)"
MATRICES = "candidate_model: matrices and Dataset (train minus boosting)"
STEP_REST = "{step}: the rest (resources, MLflow run, outputs, untimed code)"


def labels(runs: list[dict[str, Any]]) -> list[str]:
    """The parts of the two big steps, in the order of ``PARTS``, with the derived ones."""
    timed = {label for run in runs for label in run["parts"]}
    out = []
    for _, _, label in PARTS:
        for name in ("candidate_model", "evaluation_report"):
            text = f"{name}: load training set" if not isinstance(label, str) else label
            if text in timed and text not in out:
                out.append(text)
    out.insert(out.index(TRAIN) + 1, MATRICES)
    out.remove(TRAIN)
    return [
        *out,
        *(STEP_REST.format(step=step) for step in ("candidate_model", "evaluation_report")),
    ]


def part(run: dict[str, Any], label: str) -> float:
    """Seconds of one part in one run (the derived parts computed from the others)."""
    parts = run["parts"]
    if label == MATRICES:
        return parts.get(TRAIN, 0.0) - run["boosting_s"]
    for step in ("candidate_model", "evaluation_report"):
        if label == STEP_REST.format(step=step):
            inside = sum(s for key, s in parts.items() if key.startswith(f"{step}:"))
            scoring = run["scoring_s"] if step == "evaluation_report" else 0.0
            return run["steps"][step] - inside - scoring
    return parts.get(label, 0.0)


def report(m: dict[str, Any]) -> dict[str, Any]:
    """Print the tables and return the figures of the JSON line."""
    runs = [summarize(size, scenario) for size in m["sizes"] for scenario in SCENARIOS]
    print_table(
        "Training: bare LightGBM (the peer: lgb.Dataset + lgb.train on prepared arrays) next to "
        "ours (candidate_model -> evaluation_report + gate -> canary_release -> canary_analysis "
        "-> production_model through Dagster), same rows, same parameters; first model against "
        "the baseline, then a retrain against it as champion; both sides 1 warm-up + "
        f"{m['repeats']} interleaved runs, medians; overhead = ours - holdout scoring - bare "
        "(% of bare)",
        ["rows", "frauds", "scenario", "reference", "gate", "promoted", "rounds (peer)",
         "bare LightGBM s", "ours s", "holdout scoring s", "ours - scoring s", "overhead s",
         "overhead %", "target", "before: % of own boosting", "bare peak MB", "ours peak MB"],
        [[r["rows"], r["frauds"], r["scenario"], r["reference"], r["gate"], r["promoted"],
          f"{r['rounds']} ({r['peer_rounds']})", r["bare_lightgbm_s"], r["ours_total_s"],
          r["holdout_scoring_s"], r["ours_without_scoring_s"], r["overhead_s"],
          r["overhead_pct"], "met" if r["target_met"] else "NOT met",
          r["old_definition_overhead_pct"], r["bare_peak_rss_mb"], r["ours_peak_rss_mb"]]
         for r in runs],
    )  # fmt: skip
    print_table(
        "Where the overhead goes (seconds, medians of each part; % of the peer's bare training)",
        ["rows", "scenario", "overhead s", "boosting inside ours - bare", "candidate_model "
         "besides boosting", "evaluation_report besides scoring", "gate check",
         "release + promotion", "Dagster run bookkeeping", "bare LightGBM s"],
        [[r["rows"], r["scenario"], r["overhead_s"],
          *(share(r[key], r) for key in (
              "boosting_inside_ours_minus_bare_s", "candidate_model_besides_boosting_s",
              "evaluation_report_besides_scoring_s", "gate_check_s", "release_and_promotion_s",
              "dagster_run_s")),
          r["bare_lightgbm_s"]]
         for r in runs],
    )  # fmt: skip
    print_table(
        "Inside candidate_model and evaluation_report: each part's seconds, timed where the "
        "platform calls it (medians; % of the peer's bare training). Not in here: the boosting "
        "and the holdout's scoring by the gate (above)",
        ["part", *(f"{r['rows']:,} {r['scenario']}" for r in runs)],
        [[label, *(share(r["parts"][label], r) for r in runs)] for label in runs[0]["parts"]],
    )  # fmt: skip
    cold = m["cold_imports_s"]
    print(
        "Every run in the order they ran, seconds (1-minute load average as it started; "
        "2 cores): "
        + "; ".join(
            f"{r['rows']:,} {r['scenario']}: bare "
            + ", ".join(
                f"{s:.1f} (load {load:.1f})"
                for s, load in zip(r["bare_lightgbm_runs_s"], r["bare_load_runs"], strict=True)
            )
            + "; ours "
            + ", ".join(
                f"{s:.1f} of which boosting {b:.1f} (load {load:.1f})"
                for s, b, load in zip(
                    r["ours_total_runs_s"],
                    r["boosting_inside_ours_runs_s"],
                    r["ours_load_runs"],
                    strict=True,
                )
            )
            for r in runs
        )
    )
    print(
        f"Cold imports in a fresh interpreter (once per run process; warmed before the figures "
        f"above): ours ({', '.join(OUR_IMPORTS)}) {cold['ours']:.1f} s, the peer's "
        f"({', '.join(PEER_IMPORTS)}) {cold['peer']:.1f} s. Creating an MLflow store: "
        + ", ".join(f"{r['mlflow_store_creation_s']:.1f} s" for r in runs[::2])
        + " (once per store; before the figures). "
        f"Target: overhead <= {TARGET_OVERHEAD:.0%} of the peer's bare training at "
        f"{TARGET_ROWS:,} rows."
    )
    at_target = [r for r in runs if r["rows"] == TARGET_ROWS]
    return {
        "repeats": m["repeats"],
        "warmups": 1,
        "cold_imports_s": {side: round(s, 2) for side, s in cold.items()},
        "runs": [{k: rounded(v) for k, v in r.items()} for r in runs],
        "targets_met": all(r["target_met"] for r in at_target) if at_target else None,
    }


def share(seconds: float, run: dict[str, Any]) -> str:
    """Seconds, and their share of the peer's bare training."""
    return f"{seconds:.2f} ({seconds / run['bare_lightgbm_s'] * 100:.1f} %)"


def main() -> None:
    """Measure, print the tables, end with the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k and 300k rows (smoke run)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs of each side per size (default 3)"
    )
    figures = report(measure(parser.parse_args()))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
