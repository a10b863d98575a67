"""Benchmark of model quality: Flywheel's fraud model next to a plain LightGBM on 15 features.

What is measured, and why:

* **Data**: the project's simulator (``CardPaymentsSimulator``) written into a temporary lake as
  the ingestion assets write it (``helpers.datasets.generate``), chargebacks arriving 1..30 days
  after the payment (the simulator's default, most within two weeks), so the labels known a
  week after a payment are genuinely partial. Both of Flywheel's feature tables are computed as
  the assets compute them (``helpers.datasets.compute_features``: label maturity 7 days, as the
  label policy has it, so ``merchant_chargeback_rate`` counts the chargebacks reported so far
  of payments at least 7 days old).
* **Protocol** (the standard one of the reproducible-ML handbook for card fraud, Le Borgne et
  al.), repeated for ``--test-weeks`` consecutive weeks: one week of training payments, then a
  one-week gap (the label delay), then the test week. Training labels are what is known when
  the test week starts: a training payment is a fraud if its chargeback was reported before
  then, legitimate otherwise. Test labels are the truth (every chargeback, whatever its report
  day). Known-compromised cards leave the test week: customers with a chargeback reported in
  the ``--known-fraud-days`` days before the test week starts (default 14: the training week
  and the gap, as in the handbook; a table shows the figures with no removal and with every
  report the lake holds too). Both models are scored on the same remaining rows.
* **The plain model** (the yardstick): ``lgb.LGBMClassifier(n_estimators=100)``, otherwise
  LightGBM's defaults and a fixed seed, on the 15 standard features computed here from the raw
  payments and chargebacks, independently of Flywheel's code (``helpers.standard_protocol``):
  weekend and night flags, the customer's payments and mean amount over 1, 7 and 30 days up to
  and including the payment, the terminal's (merchant's) payments and known fraud rate over 1,
  7 and 30 days ending one delay (7 days) before the payment's day, with only the chargebacks
  reported before that day, and the raw amount.
* **Flywheel's model**: its feature service joined point in time
  (``FeatureStoreResource.historical_features(entities, "polars")``, as ``training_set``
  builds it), its inputs chosen by ``recipe.model_features`` (so a feature added to the service
  is picked up here), trained by ``recipe.train`` with the default ``Hyperparameters()`` on the
  training week alone: its early-stopping rows are the week's latest ``validation_fraction``
  (the split ``recipe.time_split`` makes, without a holdout: the test week is the holdout).
  Scored by ``recipe.fraud_scores``.
* **Metrics**, per test week and their mean over the weeks: ROC-AUC and average precision
  (scikit-learn) over the test rows, and card precision @ 100 (each day, a card scores the
  highest score of its payments; of the 100 highest-scoring cards, the share with a fraud that
  day; the mean over the test days). The ceiling of card precision (the day's fraud cards, at
  most 100, over 100) is printed next to it.
* **Where the difference comes from**: Flywheel's recipe also trains on the 15 standard
  features, and the plain LightGBM on Flywheel's features, on the same rows: features and
  training, each apart.
* **Target**: Flywheel ahead of the plain model on average precision and card precision by a
  clear margin (mean over the weeks at least 5 % higher, relative), and not behind on ROC-AUC
  (mean at most 0.005 lower).

Run from the project root: ``.venv/bin/python bench/model_quality.py`` (10,000 payments a day,
4 test weeks: 79 simulated days; about 40 s on two idle cores, several minutes when other jobs
share them, LightGBM's threads waiting for a core) or ``--quick`` (3,000 a day, 2 test weeks)
for a smoke run. Every figure but the times is deterministic. The tables go to stdout, progress
to stderr, and the last line of stdout is one JSON object with every figure.
"""

import argparse
import datetime
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl
from helpers.datasets import MATURITY_DAYS, SEED, calendar, compute_features, generate, scan
from helpers.output import feast_output, progress
from helpers.standard_protocol import (
    STANDARD_FEATURES,
    card_precision_at_k,
    history_days,
    standard_features,
)
from helpers.tables import print_table
from sklearn.metrics import average_precision_score, roc_auc_score

from platform_assets.features.engineering import day_start
from platform_assets.features.labelling import JUST_BEFORE, LABEL, labelled_transactions
from platform_assets.model.recipe import (
    Hyperparameters,
    TimeSplit,
    feature_matrix,
    fraud_scores,
    model_features,
    train,
)
from resources.feature_store import TIMESTAMP, FeatureStoreResource

FIRST_TRAINING_DAY = datetime.date(2026, 2, 2)  # a Monday: every week runs Monday to Sunday
WEEK = 7
DELAY_DAYS = MATURITY_DAYS  # the gap between training and test, and the terminal features' delay
LABEL_DELAY_MAX = 30  # chargebacks arrive 1..30 days after the payment (the simulator's default)
TOP_CARDS = 100
KNOWN_FRAUD_DAYS = 2 * WEEK  # the training week and the gap
AP_MARGIN = 0.05  # relative: "ahead by a clear margin" on average precision and card precision
ROC_AUC_TOLERANCE = 0.005  # absolute: "not behind" on ROC-AUC
TARGET = "flywheel ahead on AP and card precision by a clear margin, not behind on ROC-AUC"
METRICS = ("roc_auc", "average_precision", "card_precision_at_100")
MODELS = ("flywheel", "plain_lightgbm")
# Where the difference comes from: each side's training on the other side's features.
RECIPE_ON_STANDARD = "flywheel_recipe_on_standard_features"
PLAIN_ON_FLYWHEEL = "plain_lightgbm_on_flywheel_features"
DEFAULT = {"rows_per_day": 10_000, "test_weeks": 4}
QUICK = {"rows_per_day": 3_000, "test_weeks": 2}
PLAIN_PARAMS = {
    "n_estimators": 100,
    "random_state": SEED,
    "n_jobs": 2,
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
}


@dataclass(frozen=True)
class Week:
    """One round of the protocol: a training week, the gap (label delay), the test week."""

    index: int

    @property
    def train_start(self) -> datetime.date:
        """First training day."""
        return FIRST_TRAINING_DAY + datetime.timedelta(days=WEEK * self.index)

    @property
    def test_start(self) -> datetime.date:
        """First test day: a week of training and a week of gap later."""
        return self.train_start + datetime.timedelta(days=WEEK + DELAY_DAYS)

    @property
    def test_days(self) -> list[datetime.date]:
        """The test week's days."""
        return calendar(self.test_start, WEEK)

    @property
    def known_by(self) -> datetime.datetime:
        """The instant the test week starts: what is reported before it is known."""
        return day_start(self.test_start)


@dataclass(frozen=True)
class Data:
    """The rows both models see, aligned row for row, and every chargeback of the lake."""

    flywheel: pl.DataFrame  # entity rows with the service's features; LABEL is the truth
    plain: pl.DataFrame  # transaction_id and STANDARD_FEATURES, in the same row order
    chargebacks: pl.DataFrame  # every report, any day
    features: list[str]  # Flywheel's model inputs
    first_day: datetime.date  # the lake's first day
    seconds: dict[str, float]


def lake_days(weeks: int) -> list[datetime.date]:
    """Every simulated day: the features' history, then the weeks' training, gap and test days."""
    first = FIRST_TRAINING_DAY - datetime.timedelta(days=history_days(DELAY_DAYS))
    last = Week(weeks - 1).test_start + datetime.timedelta(days=WEEK - 1)
    return calendar(first, (last - first).days + 1)


def build(tmp: Path, rows_per_day: int, weeks: int) -> Data:
    """Simulate the lake, compute both sides' features for every training and test day."""
    seconds: dict[str, float] = {}
    lake = tmp / "lake"
    days = lake_days(weeks)
    scored = [day for day in days if day >= FIRST_TRAINING_DAY]
    start = time.perf_counter()
    progress(
        f"simulating {len(days)} days x {rows_per_day:,} payments, chargebacks 1..{LABEL_DELAY_MAX}"
        f" days late, and {LABEL_DELAY_MAX} more days of reports"
    )
    generate(
        lake,
        rows_per_day,
        days,
        max_label_delay_days=LABEL_DELAY_MAX,
        report_days_after=LABEL_DELAY_MAX,
    )
    seconds["simulate"] = time.perf_counter() - start

    start = time.perf_counter()
    compute_features(lake, days, label_delay_days=DELAY_DAYS)
    feature_store = FeatureStoreResource(lake_root=str(lake), state_dir=str(tmp / "feast"))
    with feast_output():
        feature_store.apply()
    entities = labelled_transactions(
        scan(lake, "validated_transactions", scored), scan(lake, "fraud_labels")
    )
    progress(f"point-in-time join of Flywheel's service for {entities.height:,} payments")
    flywheel = (
        feature_store.historical_features(entities, "polars")
        .with_columns(day=(pl.col(TIMESTAMP) + JUST_BEFORE).dt.date())
        .sort(TIMESTAMP, "transaction_id")
    )
    seconds["flywheel_features"] = time.perf_counter() - start

    start = time.perf_counter()
    progress("the 15 standard features, from the raw payments and chargebacks")
    chargebacks = scan(lake, "fraud_labels").collect()
    standard = standard_features(
        scan(lake, "validated_transactions").collect(), chargebacks, scored, DELAY_DAYS
    )
    plain = flywheel.select("transaction_id").join(
        standard, on="transaction_id", how="left", maintain_order="left"
    )
    if plain.height != flywheel.height or plain.select(pl.col("amount").is_null().any()).item():
        raise RuntimeError("the standard features do not cover Flywheel's rows one for one")
    seconds["standard_features"] = time.perf_counter() - start
    return Data(
        flywheel=flywheel,
        plain=plain,
        chargebacks=chargebacks,
        features=model_features(Hyperparameters(), feature_store.feature_names()),
        first_day=days[0],
        seconds=seconds,
    )


def early_stopping_split(rows: pl.DataFrame, config: Hyperparameters, week: Week) -> TimeSplit:
    """The training week cut as ``recipe.time_split`` cuts it, without a holdout.

    The latest ``validation_fraction`` of the week (from a timestamp on, so one instant never
    straddles both) stops the boosting early; the holdout is the test week.
    """
    times = rows[TIMESTAMP]
    validation_start = times[int(rows.height * (1 - config.validation_fraction))]
    split = TimeSplit(
        train=rows.filter(pl.col(TIMESTAMP) < validation_start),
        validation=rows.filter(pl.col(TIMESTAMP) >= validation_start),
        holdout_start=week.known_by.isoformat(),
    )
    for name, part in (("training", split.train), ("validation", split.validation)):
        if not part[LABEL].any():
            raise ValueError(f"week {week.index + 1}: the {name} rows hold no known fraud")
    return split


def compromised(chargebacks: pl.DataFrame, week: Week, days: int | None) -> pl.Series:
    """Customers with a chargeback reported in the ``days`` days before the test week.

    With ``days`` None, every report the lake holds from before the test week counts; with 0,
    none does.
    """
    reported = pl.col("reported_at")
    known = chargebacks.filter(reported < week.known_by)
    if days == 0:
        known = known.clear()
    elif days is not None:
        known = known.filter(reported >= week.known_by - datetime.timedelta(days=days))
    return known["customer_id"].unique()


def scores_metrics(rows: pl.DataFrame, scores: np.ndarray) -> dict[str, Any]:
    """ROC-AUC, average precision and card precision @ 100 of ``scores`` on ``rows``."""
    labels = rows[LABEL].to_numpy()
    daily = card_precision_at_k(
        rows["day"], rows["customer_id"], pl.Series(scores), rows[LABEL], TOP_CARDS
    )
    return {
        "roc_auc": float(roc_auc_score(labels, scores)),
        "average_precision": float(average_precision_score(labels, scores)),
        "card_precision_at_100": float(np.mean(daily)),
        "card_precision_at_100_daily": daily,
    }


def run_week(data: Data, week: Week, known_fraud_days: int) -> dict[str, Any]:
    """Train both models on the week's training rows; score them on the same test rows."""
    day = data.flywheel["day"]
    in_training = day.is_between(week.train_start, week.train_start + datetime.timedelta(WEEK - 1))
    in_test = day.is_in(week.test_days)
    known = data.chargebacks.filter(pl.col("reported_at") < week.known_by)["transaction_id"]
    # What is known when the test week starts, not the truth.
    labels = pl.col("transaction_id").is_in(known.implode()).alias(LABEL)
    training = data.flywheel.filter(in_training)
    known_frauds = int(training.select(labels.sum()).item())
    true_frauds = int(training[LABEL].sum())
    training = training.with_columns(labels)

    progress(
        f"week {week.index + 1}: training {week.train_start} (+7 days), {training.height:,} rows, "
        f"{known_frauds} of {true_frauds} frauds known by {week.test_start}"
    )
    config = Hyperparameters()
    start = time.perf_counter()
    model = train(config, early_stopping_split(training, config, week), data.features)
    flywheel_s = time.perf_counter() - start

    start = time.perf_counter()
    plain_model = lgb.LGBMClassifier(**PLAIN_PARAMS)
    plain_model.fit(
        data.plain.filter(in_training).select(STANDARD_FEATURES).to_numpy(),
        training[LABEL].to_numpy(),
    )
    plain_s = time.perf_counter() - start

    # Every test-week row is scored once; each removal rule then keeps its own rows.
    test = data.flywheel.filter(in_test)
    scores = {
        "flywheel": fraud_scores(model.booster, test),
        "plain_lightgbm": plain_model.predict_proba(
            data.plain.filter(in_test).select(STANDARD_FEATURES).to_numpy()
        )[:, 1],
    }
    standard = data.plain.with_columns(data.flywheel[TIMESTAMP])
    crossed = train(
        config,
        early_stopping_split(
            standard.filter(in_training).with_columns(training[LABEL]), config, week
        ),
        STANDARD_FEATURES,
    )
    scores[RECIPE_ON_STANDARD] = fraud_scores(crossed.booster, standard.filter(in_test))
    plain_on_flywheel = lgb.LGBMClassifier(**PLAIN_PARAMS).fit(
        feature_matrix(training, data.features), training[LABEL].to_numpy()
    )
    scores[PLAIN_ON_FLYWHEEL] = plain_on_flywheel.predict_proba(
        feature_matrix(test, data.features)
    )[:, 1]
    rules = {
        "default": known_fraud_days,
        "none": 0,
        "lake": None,
    }
    by_rule = {}
    for rule, days in rules.items():
        removed = compromised(data.chargebacks, week, days)
        keep = (~test["customer_id"].is_in(removed.implode())).to_numpy()
        kept = test.filter(keep)
        fraud_cards = (
            kept.filter(pl.col(LABEL)).group_by("day").agg(pl.col("customer_id").n_unique())
        )
        by_rule[rule] = {
            "rows": kept.height,
            "removed_customers": removed.len(),
            "frauds": int(kept[LABEL].sum()),
            # The best card precision any model could reach: min(fraud cards, k) / k per day.
            "card_precision_ceiling": float(
                sum(min(n, TOP_CARDS) for n in fraud_cards["customer_id"])
                / TOP_CARDS
                / len(week.test_days)
            ),
            **{name: scores_metrics(kept, side[keep]) for name, side in scores.items()},
        }
    return {
        "week": week.index + 1,
        "training_days": f"{week.train_start}..{week.train_start + datetime.timedelta(WEEK - 1)}",
        "test_days": f"{week.test_start}..{week.test_days[-1]}",
        "training_rows": training.height,
        "training_frauds_true": true_frauds,
        "training_frauds_known": known_frauds,
        "test_rows_in_week": test.height,
        "flywheel_rounds": model.best_iteration,
        "flywheel_train_s": flywheel_s,
        "plain_train_s": plain_s,
        **by_rule["default"],
        "removal_rules": by_rule,
    }


def mean(weeks: list[dict[str, Any]], model: str, rule: str = "default") -> dict[str, float]:
    """Each metric's mean over the weeks, for one model and removal rule."""
    return {
        metric: float(np.mean([w["removal_rules"][rule][model][metric] for w in weeks]))
        for metric in METRICS
    }


def verdict(means: dict[str, dict[str, float]]) -> dict[str, bool]:
    """Whether Flywheel meets each part of the target."""
    ours, plain = means["flywheel"], means["plain_lightgbm"]
    return {
        "average_precision": ours["average_precision"]
        >= plain["average_precision"] * (1 + AP_MARGIN),
        "card_precision_at_100": ours["card_precision_at_100"]
        >= plain["card_precision_at_100"] * (1 + AP_MARGIN),
        "roc_auc": ours["roc_auc"] >= plain["roc_auc"] - ROC_AUC_TOLERANCE,
    }


def report(args: argparse.Namespace, data: Data, weeks: list[dict[str, Any]]) -> dict[str, Any]:
    """Print the tables and return the figures of the JSON line."""
    means = {model: mean(weeks, model) for model in MODELS}
    rows = []
    for w in weeks:
        for model in MODELS:
            rows.append([f"week {w['week']}", w["test_days"], model,
                         *(w[model][metric] for metric in METRICS)])  # fmt: skip
    for model in MODELS:
        rows.append(["mean", f"{len(weeks)} weeks", model, *means[model].values()])
    ours, plain = means["flywheel"], means["plain_lightgbm"]
    rows.append(["mean", "", "flywheel - plain", *(ours[m] - plain[m] for m in METRICS)])
    print_table(
        f"Model quality on the same test rows: Flywheel's model ({len(data.features)} service "
        "features, recipe.train, default Hyperparameters) next to a plain LightGBM "
        "(n_estimators=100) on the 15 standard features; train 1 week, gap 7 days, test 1 week; "
        f"{args.rows_per_day:,} payments a day; known-compromised cards removed (chargeback "
        f"reported in the {args.known_fraud_days} days before the test week)",
        ["week", "test days", "model", "ROC-AUC", "average precision", "card precision @ 100"],
        rows,
    )
    print_table(
        "The rows of each week: training labels as known when the test week starts (labels "
        f"arrive 1..{LABEL_DELAY_MAX} days after the payment, so a week after the training week "
        "some are still missing); test labels the truth",
        ["week", "training days", "training rows", "frauds (true)", "known by test start",
         "known %", "test rows in week", "known-compromised customers", "rows removed %",
         "test rows scored", "test frauds", "card precision ceiling", "Flywheel rounds",
         "Flywheel train s", "plain train s"],
        [[w["week"], w["training_days"], w["training_rows"], w["training_frauds_true"],
          w["training_frauds_known"], 100 * w["training_frauds_known"] / w["training_frauds_true"],
          w["test_rows_in_week"], w["removed_customers"],
          100 * (1 - w["rows"] / w["test_rows_in_week"]), w["rows"], w["frauds"],
          w["card_precision_ceiling"], w["flywheel_rounds"], w["flywheel_train_s"],
          w["plain_train_s"]]
         for w in weeks],
    )  # fmt: skip
    rules = {
        "default": f"chargeback reported in the {args.known_fraud_days} days before (default)",
        "none": "none removed",
        "lake": f"any chargeback the lake holds (reports since {data.first_day})",
    }
    print_table(
        "Which cards leave the test week: the means over the weeks under each rule (the same "
        "models and scores; only the rows kept differ)",
        ["known-compromised cards", "test rows kept %", "model", "ROC-AUC", "average precision",
         "card precision @ 100", "card precision ceiling"],
        [[text if model == MODELS[0] else "",
          100 * sum(w["removal_rules"][rule]["rows"] for w in weeks)
          / sum(w["test_rows_in_week"] for w in weeks),
          model, *mean(weeks, model, rule).values(),
          float(np.mean([w["removal_rules"][rule]["card_precision_ceiling"] for w in weeks]))]
         for rule, text in rules.items() for model in MODELS],
    )  # fmt: skip
    grid = (
        (f"Flywheel's {len(data.features)}", "Flywheel's recipe", "flywheel"),
        (f"Flywheel's {len(data.features)}", "plain LightGBM", PLAIN_ON_FLYWHEEL),
        ("the 15 standard", "Flywheel's recipe", RECIPE_ON_STANDARD),
        ("the 15 standard", "plain LightGBM", "plain_lightgbm"),
    )
    ablation = {name: mean(weeks, name) for _, _, name in grid}
    print_table(
        "Where the difference comes from: each training on each set of features (the same "
        "rows; means over the weeks). Flywheel's recipe: recipe.train, default Hyperparameters "
        "(early stopping, monotone constraints on the features it names)",
        ["features", "training", "ROC-AUC", "average precision", "card precision @ 100"],
        [[features, training, *ablation[name].values()] for features, training, name in grid],
    )
    met = verdict(means)
    print(
        f"\nFlywheel's model inputs ({len(data.features)}, from recipe.model_features over the "
        f"fraud_model_v2 service): {', '.join(data.features)}.\nThe plain model's: "
        f"{', '.join(STANDARD_FEATURES)}.\nLabel maturity of Flywheel's merchant features: "
        f"{MATURITY_DAYS} days, while chargebacks arrive up to {LABEL_DELAY_MAX} days late: "
        "merchant_chargeback_rate counts the chargebacks reported so far, a partial count, as "
        "do the standard terminal fraud rates.\nTarget: "
        f"{TARGET} (mean over the weeks: AP and card precision at least {AP_MARGIN:.0%} higher, "
        f"ROC-AUC at most {ROC_AUC_TOLERANCE} lower): "
        + ", ".join(f"{metric} {'met' if ok else 'NOT met'}" for metric, ok in met.items())
        + "."
    )
    return {
        "bench": "model_quality",
        "rows_per_day": args.rows_per_day,
        "weeks": len(weeks),
        **{model: {k: round(v, 4) for k, v in means[model].items()} for model in MODELS},
        "target": TARGET,
        "met": all(met.values()),
        "met_by_metric": met,
        "known_fraud_days": args.known_fraud_days,
        "label_delay_max_days": LABEL_DELAY_MAX,
        "flywheel_features": data.features,
        "per_week": [
            {
                "week": w["week"],
                "test_days": w["test_days"],
                "training_rows": w["training_rows"],
                "training_frauds_known": w["training_frauds_known"],
                "training_frauds_true": w["training_frauds_true"],
                "test_rows": w["rows"],
                "test_rows_in_week": w["test_rows_in_week"],
                "test_frauds": w["frauds"],
                "flywheel_rounds": w["flywheel_rounds"],
                **{
                    model: {metric: round(w[model][metric], 4) for metric in METRICS}
                    for model in MODELS
                },
            }
            for w in weeks
        ],
        "removal_rules": {
            rule: {
                model: {k: round(v, 4) for k, v in mean(weeks, model, rule).items()}
                for model in MODELS
            }
            for rule in rules
        },
        "ablation": {
            name: {k: round(v, 4) for k, v in ablation[name].items()}
            for name in (PLAIN_ON_FLYWHEEL, RECIPE_ON_STANDARD)
        },
        "seconds": {k: round(v, 1) for k, v in data.seconds.items()},
    }


def main() -> None:
    """Build the data, run every week, print the tables, end with the JSON line."""
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3,000 payments a day, 2 test weeks")
    parser.add_argument("--rows-per-day", type=int, help="default 10,000 (quick: 3,000)")
    parser.add_argument("--test-weeks", type=int, help="default 4 (quick: 2)")
    parser.add_argument(
        "--known-fraud-days",
        type=int,
        default=KNOWN_FRAUD_DAYS,
        help="cards with a chargeback reported in these days before the test week leave it "
        f"(default {KNOWN_FRAUD_DAYS}: the training week and the gap)",
    )
    args = parser.parse_args()
    plan = QUICK if args.quick else DEFAULT
    args.rows_per_day = args.rows_per_day or plan["rows_per_day"]
    args.test_weeks = args.test_weeks or plan["test_weeks"]
    if args.known_fraud_days < 1:
        parser.error("--known-fraud-days must be >= 1 (the table shows no removal too)")
    with tempfile.TemporaryDirectory(prefix="bench-model-quality-", dir="/tmp") as tmp:
        data = build(Path(tmp), args.rows_per_day, args.test_weeks)
    start = time.perf_counter()
    weeks = [run_week(data, Week(n), args.known_fraud_days) for n in range(args.test_weeks)]
    data.seconds["train_and_score"] = time.perf_counter() - start
    data.seconds["total"] = time.perf_counter() - started
    figures = report(args, data, weeks)
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in data.seconds.items() if k != "total")
    print(f"Wall time: {data.seconds['total']:.0f} s ({parts}).")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
