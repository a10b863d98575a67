"""Benchmark of monitoring one day: Flywheel's monitoring against Evidently's presets, same rows.

* **Data** (untimed, numpy, seed 7): a training frame and a day of ``--rows`` rows each (1M;
  ``--quick`` 100k) with the model inputs ``model_features`` takes from the feature service (29
  with ``fraud_model_v2``; 20 with ``fraud_model_v1``, when the README's figures were taken),
  each a fixed transform of a standard-normal latent. On the day, three latents move 1 sd
  (strong), two 0.5 sd (mild: PSI about 0.2, the warn band), the rest not; a synthetic label
  (2 % fraud in training, 5 % on the day) depends on five. ``recipe.train`` (learning rate 0.1)
  fits the booster, ``training_reference`` builds its reference, the threshold is
  ``operating_point`` at ``GateRules``' precision.
* **Flywheel**, as ``champion_scores`` + ``model_monitoring_report``: score the day, write it to
  the prediction log (SQLite via ADBC) and read it back, PSI per feature and of the scores, the
  calibrated estimate, realized performance (labels: the day's charged-back ids), business cost.
* **Evidently 0.7**: ``Report([DataDriftPreset(features + score), ClassificationPreset(
  probas_threshold)], include_tests=True)`` on all the training rows and the whole day, pandas
  conversion and ``snapshot.dict()`` included, no HTML; its scores are given to it, untimed.
* Each side runs in a fresh process (``--side``) on the same files, imports warmed, so its peak
  RSS (``VmHWM`` reset before the step, ``helpers.memory``) is its own.
* **Verdicts**: Flywheel drifted = PSI >= 0.1 (``MonitoringPolicy``'s warn); Evidently = its
  per-column drift test fails (normed Wasserstein >= 0.1; Jensen-Shannon >= 0.1 for columns of
  at most 5 values). Target: >= 5x faster with the same verdict on every feature. Normed
  Wasserstein divides by the reference's standard deviation, which a few extremes dominate on a
  heavy-tailed feature: the mild shift of ``seconds_since_last_transaction`` (log-normal, sigma 2)
  scores near 0.1 there, either side of it by sample, while PSI, on ranks, scores it as the other.

Tables on stdout, progress on stderr; the last line of stdout is one JSON object.
"""

import argparse
import datetime
import importlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl
from helpers.memory import run_measured
from helpers.output import progress
from helpers.tables import print_table

from platform_assets.features.labelling import LABEL
from platform_assets.ingestion.drift import binned_psi
from platform_assets.model import recipe
from platform_assets.model.gate import GateRules
from platform_assets.model.suite import operating_point
from platform_assets.monitoring import performance
from platform_assets.monitoring.reference import calibrate, training_reference
from resources.feature_store import TIMESTAMP, FeatureStoreResource
from resources.monitoring_policy import MonitoringPolicy
from resources.prediction_log import BATCH, PredictionLog

SEED = 7
DAY = datetime.datetime(2026, 3, 29, tzinfo=datetime.UTC)
TRAINING_DAYS = 28
TARGET_SPEEDUP = 5.0
DRIFTED_PSI = MonitoringPolicy().feature_drift_warn
STRONG, MILD = 1.0, 0.5
# Latent shift (sd) of the current day per feature; the others are not shifted.
SHIFTS = {"txn_count_24h": STRONG, "amount_mean_30d": STRONG, "merchant_chargeback_rate": STRONG,
          "amount_to_customer_mean": MILD, "seconds_since_last_transaction": -MILD}  # fmt: skip
# Each feature from its latent z: (kind, location, scale); see feature_values.
SPECS = {
    "txn_count_1h": ("count", 0.0, 0.6), "txn_count_24h": ("count", 1.2, 0.6),
    "txn_count_7d": ("count", 2.5, 0.6), "txn_count_30d": ("count", 3.6, 0.6),
    "amount_sum_1h": ("amount", 3.0, 1.1), "amount_sum_24h": ("amount", 4.2, 1.1),
    "amount_mean_7d": ("amount", 3.6, 0.8), "amount_mean_30d": ("amount", 3.7, 0.7),
    "amount_std_30d": ("amount", 3.2, 0.8), "amount_max_30d": ("amount", 5.0, 0.9),
    "distinct_merchants_24h": ("count", 0.8, 0.5), "merchant_txn_count_24h": ("count", 5.0, 1.5),
    "merchant_txn_count_7d": ("count", 7.0, 1.5), "merchant_amount_mean_7d": ("amount", 3.8, 0.6),
    "merchant_matured_txn_count": ("count", 6.5, 1.5),
    "merchant_chargeback_rate": ("rate", -5.0, 0.8),
    "amount_to_customer_mean": ("amount", 0.0, 0.6), "hour_of_day": ("hour", 14.0, 5.0),
    "is_foreign": ("flag", 1.4, 0.0), "seconds_since_last_transaction": ("count", 9.0, 2.0),
}  # fmt: skip
# The label's log-odds: an intercept and a weight per feature's latent (the flag: its value).
FRAUD_LOGIT = (-5.0, {"amount_to_customer_mean": 0.9, "merchant_chargeback_rate": 0.8,
               "txn_count_1h": 0.5, "amount_max_30d": 0.4, "is_foreign": 1.2})  # fmt: skip


def service_features() -> list[str]:
    """The model's inputs: the feature service's numeric features, as ``candidate_model`` uses."""
    with tempfile.TemporaryDirectory() as folder:
        store = FeatureStoreResource(lake_root=folder, state_dir=folder)
        services = store.definitions().feature_services
    service = next(s for s in services if s.name == store.feature_service)
    names = [f.name for view in service.feature_view_projections for f in view.features]
    features = recipe.model_features(recipe.Hyperparameters(), names)
    if set(features) != set(SPECS):
        raise ValueError(f"SPECS must cover exactly the model's features {features}")
    return features


def feature_values(kind: str, location: float, scale: float, z: np.ndarray) -> np.ndarray:
    """A feature's values from its standard-normal latent ``z``."""
    if kind == "hour":
        return np.floor((location + scale * z) % 24)
    if kind == "flag":
        return (z > location).astype(np.float64)
    x = location + scale * z
    if kind == "rate":
        return 1 / (1 + np.exp(-x))
    return np.floor(np.exp(x)) if kind == "count" else np.round(np.exp(x), 2)


def simulate(
    rng: np.random.Generator, rows: int, features: list[str], start: datetime.datetime, days: int
) -> pl.DataFrame:
    """``rows`` payments over ``days`` from ``start``, sorted by time, with features and label."""
    shifts = SHIFTS if days == 1 else {}
    latent = {name: rng.standard_normal(rows) + shifts.get(name, 0.0) for name in features}
    values = {name: feature_values(*SPECS[name], latent[name]) for name in features}
    intercept, weights = FRAUD_LOGIT
    logit = intercept + sum(
        w * (values if SPECS[name][0] == "flag" else latent)[name] for name, w in weights.items()
    )
    epoch_s = int(start.timestamp())
    micros = np.sort(rng.integers(0, days * 86_400_000_000, rows)) + epoch_s * 1_000_000
    return pl.DataFrame(
        {
            "transaction_id": pl.Series(np.arange(rows) + epoch_s).cast(pl.String),
            "customer_id": rng.integers(1, 200_000, rows),
            "amount": np.round(values["amount_to_customer_mean"] * values["amount_mean_30d"], 2),
            TIMESTAMP: pl.Series(micros).cast(pl.Datetime("us", "UTC")),
            **values,
            LABEL: pl.Series(rng.random(rows) < 1 / (1 + np.exp(-logit))).cast(pl.Int8),
        }
    )


def prepare(folder: Path, rows: int) -> dict[str, Any]:
    """Generate the data, train the model and its reference; write what both sides read."""
    progress("reading the model's features from the feature service")
    features = service_features()
    progress(f"generating {rows:,} training rows and a day of {rows:,}, training the model")
    rng = np.random.default_rng(SEED)
    training = simulate(rng, rows, features, DAY - datetime.timedelta(TRAINING_DAYS), TRAINING_DAYS)
    current = simulate(rng, rows, features, DAY, 1)
    config = recipe.Hyperparameters(learning_rate=0.1, max_rounds=200, early_stopping_rounds=20)
    split = recipe.time_split(training, config.validation_fraction, config.holdout_fraction)
    model = recipe.train(config, split, features)
    held = recipe.holdout(training, split.holdout_start)
    labels, scores = held[LABEL].to_numpy(), recipe.fraud_scores(model.booster, held)
    reference = training_reference(split.train, features, labels, scores)
    model.booster.save_model(str(folder / "model.txt"))
    (folder / "reference.json").write_text(json.dumps(reference))
    for name, frame in (("training", split.train.select(*features, LABEL)), ("current", current)):
        scored = frame.with_columns(score=recipe.fraud_scores(model.booster, frame))
        scored.write_parquet(folder / f"{name}.parquet")
    threshold = operating_point(labels, scores, GateRules().operating_precision)[1]
    meta = {"features": features, "threshold": threshold, "reference_rows": split.train.height,
            "frauds": int(current[LABEL].sum())}  # fmt: skip
    (folder / "meta.json").write_text(json.dumps(meta))
    return meta


def monitor_day(
    day_rows: pl.DataFrame, booster: lgb.Booster, reference: dict[str, Any], threshold: float,
    charged: pl.Series, log: PredictionLog,
) -> dict[str, Any]:  # fmt: skip
    """Flywheel's day: scores into the prediction log and back, drift, estimate, realized, cost."""
    day, marks = DAY.date().isoformat(), [("start", time.perf_counter())]

    def step(name: str) -> None:
        marks.append((name, time.perf_counter()))

    scored = day_rows.with_columns(score=recipe.fraud_scores(booster, day_rows))
    rows = scored.select(
        *[pl.col(name).cast(pl.Float64) for name in booster.feature_name()],
        request_id="transaction_id", transaction_id="transaction_id", customer_id="customer_id",
        amount="amount", event_time=TIMESTAMP, day=pl.lit(day), model_name=pl.lit("fraud_model"),
        model_version=pl.lit("1"), variant=pl.lit("champion"), source=pl.lit(BATCH),
        score="score", threshold=pl.lit(threshold), decision=pl.col("score") >= threshold,
        logged_at=pl.lit(datetime.datetime.now(datetime.UTC)).dt.cast_time_unit("us"),
    )  # fmt: skip
    step("score")
    log.replace(day, BATCH, rows)
    step("log write")
    rows = log.read(day)
    step("log read")
    features = {name: binned_psi(bins, rows[name]) for name, bins in reference["features"].items()}
    prediction = binned_psi(reference["scores"], rows["score"])
    step("drift")
    scores = rows["score"].to_numpy()
    probabilities = calibrate(scores, reference["calibration"])
    estimated = performance.estimated_performance(scores, probabilities, rows["threshold"][0])
    step("estimate")
    labels = rows["transaction_id"].is_in(charged.implode()).to_numpy().astype(np.int8)
    realized = performance.realized_performance(labels, scores, GateRules().operating_precision)
    step("realized")
    policy = MonitoringPolicy()
    business = performance.business_metrics(
        rows["amount"].to_numpy(), rows["decision"].to_numpy(), labels,
        policy.cost_per_missed_fraud, policy.cost_per_false_alarm,
    )  # fmt: skip
    step("business")
    steps = {name: t - marks[i][1] for i, (name, t) in enumerate(marks[1:])}
    return {"rows": rows.height, "feature_psi": features, "prediction_psi": prediction,
            "estimated": estimated, "realized": realized, "business": business,
            "steps": steps}  # fmt: skip


def flywheel_side(folder: Path) -> dict[str, Any]:
    """Flywheel's measurement, in this (fresh) process."""
    threshold = json.loads((folder / "meta.json").read_text())["threshold"]
    reference = json.loads((folder / "reference.json").read_text())
    booster = lgb.Booster(model_file=str(folder / "model.txt"))
    current = pl.read_parquet(folder / "current.parquet").drop("score")
    charged = current.filter(pl.col(LABEL) == 1)["transaction_id"]
    day_rows, log = current.drop(LABEL), PredictionLog(url=f"sqlite:///{folder}/p.db")
    importlib.import_module("adbc_driver_sqlite.dbapi")  # warm, like the imports above
    progress(f"Flywheel: monitoring {current.height:,} rows")
    result, figures = run_measured(
        lambda: monitor_day(day_rows, booster, reference, threshold, charged, log)
    )
    return {**result, "figures": figures}


def evidently_side(folder: Path) -> dict[str, Any]:
    """Evidently's measurement, in this (fresh) process."""
    import warnings

    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset, DataDriftPreset

    warnings.simplefilter("ignore")  # sklearn's ill-defined precision, once per metric
    meta = json.loads((folder / "meta.json").read_text())
    columns = [*meta["features"], "score"]
    training, current = (
        pl.read_parquet(folder / f"{name}.parquet", columns=[*columns, LABEL])
        for name in ("training", "current")
    )
    definition = DataDefinition(
        numerical_columns=columns,
        classification=[BinaryClassification(target=LABEL, prediction_probas="score")],
    )
    presets = [
        DataDriftPreset(columns=columns),
        ClassificationPreset(probas_threshold=meta["threshold"]),
    ]

    def run() -> dict[str, Any]:
        current_data, reference_data = (
            Dataset.from_pandas(frame.to_pandas(), data_definition=definition)
            for frame in (current, training)
        )
        report = Report(presets, include_tests=True)
        return report.run(current_data=current_data, reference_data=reference_data).dict()

    progress(f"Evidently: DataDriftPreset + ClassificationPreset on {current.height:,} rows")
    snapshot, figures = run_measured(run)
    drift = {
        m["config"]["column"]: {"method": m["config"]["method"], "score": m["value"]}
        for m in snapshot["metrics"]
        if m["config"]["type"].endswith(":ValueDrift")
    }
    for test in snapshot["tests"]:
        if test["id"] == "drift":
            drift[test["metric_config"]["params"]["column"]]["drifted"] = test["status"] == "FAIL"
    return {"rows": current.height, "drift": drift, "figures": figures}


SIDES = {"flywheel": flywheel_side, "evidently": evidently_side}


def run_side(side: str, folder: Path) -> dict[str, Any]:
    """One side in a fresh interpreter; its JSON line."""
    command = [sys.executable, __file__, "--side", side, "--data", str(folder)]
    out = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def report(quick: bool, meta: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any]):
    """Print the tables; return the figures of the JSON line."""
    fly, evi = ours["figures"], theirs["figures"]
    speedup = evi["seconds"] / fly["seconds"]
    print_table(
        f"Monitoring one day ({meta['frauds']:,} frauds) against the training rows: Flywheel "
        "(score, prediction log write + read, PSI, estimate, realized, business) vs Evidently "
        "(DataDriftPreset + ClassificationPreset, pandas conversion included), own process each",
        ["side", "rows", "reference rows", "seconds", "peak RSS MB", "RSS before MB", "growth MB"],
        [[side, result["rows"], meta["reference_rows"], f["seconds"], round(f["peak_mb"]),
          round(f["rss_before_mb"]), round(f["peak_mb"] - f["rss_before_mb"])]
         for side, result, f in (("Flywheel", ours, fly), ("Evidently", theirs, evi))],
    )  # fmt: skip
    steps = ", ".join(f"{name} {s:.2f} s" for name, s in ours["steps"].items())
    print(f"speed-up: {speedup:.1f}x (target >= {TARGET_SPEEDUP:.0f}x); Flywheel: {steps}")
    rows = []
    for name in meta["features"]:
        psi, their, shift = ours["feature_psi"][name], theirs["drift"][name], SHIFTS.get(name, 0)
        kind = "strong" if abs(shift) == STRONG else "mild" if shift else "none"
        rows.append([name, f"{shift:+.1f} sd ({kind})" if shift else kind, psi, psi >= DRIFTED_PSI,
                     their["method"], their["score"], their["drifted"],
                     (psi >= DRIFTED_PSI) == their["drifted"]])  # fmt: skip
    agree = sum(row[-1] for row in rows)
    print_table(
        f"Per-feature drift verdicts: Flywheel PSI >= {DRIFTED_PSI} vs Evidently's own test",
        ["feature", "designed shift", "PSI", "Flywheel drifted", "Evidently method",
         "Evidently score", "Evidently drifted", "agree"],
        rows,
    )  # fmt: skip
    score, io = theirs["drift"]["score"], ("score", "log write", "log read")
    analysis = fly["seconds"] - sum(ours["steps"][step] for step in io)
    print(
        f"verdicts agree on {agree} of {len(rows)} features"
        + "".join(f"; {r[0]}: PSI {r[2]:.3f} vs {r[4]} {r[5]:.3f}" for r in rows if not r[-1])
        + f". Prediction drift (not counted, other references: holdout vs training scores): PSI "
        f"{ours['prediction_psi']:.3f}, Evidently {score['score']:.3f}. Flywheel without scoring "
        f"and the log's round trip (which Evidently does not do): {analysis:.2f} s, "
        f"{evi['seconds'] / analysis:.0f}x faster than Evidently"
    )
    return {
        "bench": "monitoring", "quick": quick, "rows": ours["rows"],
        "evidently_rows": theirs["rows"], "reference_rows": meta["reference_rows"],
        "flywheel_seconds": round(fly["seconds"], 3), "evidently_seconds": round(evi["seconds"], 3),
        "speedup": round(speedup, 1), "flywheel_peak_mb": round(fly["peak_mb"], 1),
        "evidently_peak_mb": round(evi["peak_mb"], 1),
        "flywheel_growth_mb": round(fly["peak_mb"] - fly["rss_before_mb"], 1),
        "evidently_growth_mb": round(evi["peak_mb"] - evi["rss_before_mb"], 1),
        "flywheel_steps_s": {name: round(s, 3) for name, s in ours["steps"].items()},
        "flywheel_analysis_seconds": round(analysis, 3),
        "verdicts_agree": agree, "features": len(rows),
        "targets_met": speedup >= TARGET_SPEEDUP and agree == len(rows),
    }  # fmt: skip


def main() -> None:
    """Prepare the data, measure each side in its own process, print the tables and the JSON."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k rows a side (smoke run)")
    parser.add_argument("--rows", type=int, help="rows of the day; default 1_000_000")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:  # a child process: one side's measurement
        print(json.dumps(SIDES[args.side](args.data)))
        return
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    with tempfile.TemporaryDirectory(prefix="bench-monitoring-", dir="/tmp") as tmp:
        meta = prepare(Path(tmp), rows)
        results = [run_side(side, Path(tmp)) for side in SIDES]
    print(json.dumps(report(args.quick, meta, *results)))


if __name__ == "__main__":
    main()
