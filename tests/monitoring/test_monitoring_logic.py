"""Unit tests of monitoring's pure logic and of the prediction log on a real SQLite file."""

import datetime
import threading

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import average_precision_score

from platform_assets.ingestion.drift import write_drift_report
from platform_assets.monitoring.performance import (
    business_metrics,
    estimated_performance,
    expected_label_share,
    realized_performance,
)
from platform_assets.monitoring.reference import calibrate, reference_rows, training_reference
from platform_assets.monitoring.verdicts import judge
from resources.monitoring_policy import MonitoringPolicy
from resources.prediction_log import BATCH, LOG_COLUMNS, PredictionLog

pytestmark = pytest.mark.unit


def test_estimated_performance_matches_labels_drawn_from_the_calibrated_scores():
    rng = np.random.default_rng(3)
    scores = rng.beta(0.3, 20, 200_000)
    labels = (rng.random(scores.size) < scores).astype(np.int8)
    threshold = float(np.quantile(scores, 0.99))
    estimate = estimated_performance(scores, scores, threshold)
    flagged = scores >= threshold
    assert estimate["estimated_pr_auc"] == pytest.approx(
        average_precision_score(labels, scores), rel=0.05
    )
    assert estimate["estimated_precision"] == pytest.approx(labels[flagged].mean(), rel=0.05)
    assert estimate["estimated_recall"] == pytest.approx(
        labels[flagged].sum() / labels.sum(), rel=0.05
    )


def test_calibration_map_turns_overconfident_scores_into_fraud_rates():
    rng = np.random.default_rng(5)
    truth = rng.beta(0.3, 20, 50_000)
    labels = (rng.random(truth.size) < truth).astype(np.int8)
    overconfident = np.sqrt(truth)  # same ranking, far too high
    frame = pl.DataFrame({"x": rng.normal(size=100)})
    reference = training_reference(frame, ["x"], labels, overconfident)
    probabilities = calibrate(overconfident, reference["calibration"])
    assert abs(probabilities.mean() - labels.mean()) < 0.1 * labels.mean()
    assert overconfident.mean() > 3 * labels.mean()


def test_the_reference_is_built_from_a_seeded_uniform_sample_capped_at_its_rows():
    rng = np.random.default_rng(11)
    holdout = pl.DataFrame({"row": np.arange(50_000), "is_fraud": rng.random(50_000) < 0.05})
    sample = reference_rows(holdout, 10_000, seed=7)
    assert sample.height == 10_000
    assert sample["row"].n_unique() == 10_000  # without replacement
    assert sample.equals(reference_rows(holdout, 10_000, seed=7))
    assert not sample.equals(reference_rows(holdout, 10_000, seed=8))
    # Uniform, not stratified: the fraud rate is the holdout's, as every consumer reads it.
    assert sample["is_fraud"].mean() == pytest.approx(holdout["is_fraud"].mean(), abs=0.01)
    assert reference_rows(holdout, 60_000, seed=7) is holdout  # fewer rows than the cap: all
    scores = rng.random(sample.height)
    reference = training_reference(
        sample.rename({"row": "x"}), ["x"], sample["is_fraud"].cast(pl.Int8).to_numpy(), scores
    )
    assert reference["train_rows"] == reference["holdout"]["rows"] == 10_000
    with pytest.raises(ValueError, match="at least one row"):
        reference_rows(holdout, 0, seed=7)


def test_realized_and_business_metrics_on_a_known_day():
    labels = np.array([1, 1, 0, 0, 0, 0])
    scores = np.array([0.9, 0.2, 0.8, 0.1, 0.1, 0.05])
    amount = np.array([100.0, 50.0, 20.0, 10.0, 10.0, 10.0])
    declined = scores >= 0.5
    realized = realized_performance(labels, scores, 0.5)
    assert realized["realized_recall_at_precision"] == 1.0
    business = business_metrics(amount, declined, labels, 25.0, 5.0)
    assert business["fraud_amount_caught"] == 100.0
    assert business["fraud_amount_missed"] == 50.0
    assert business["false_positive_rate"] == pytest.approx(0.25)
    assert business["cost"] == 50.0 + 25.0 + 5.0


def test_label_share_from_history_or_from_the_maturity_without_it():
    delays = np.array([1, 1, 2, 3, 5])
    assert expected_label_share(delays, 2, 30) == pytest.approx(0.6)
    assert expected_label_share(np.array([]), 29, 30) == 0.0
    assert expected_label_share(np.array([]), 30, 30) == 1.0


def report(psi: float = 0.01, estimated: float = 0.1, realized: float | None = None) -> dict:
    return {
        "feature_psi": {"a": psi, "b": 0.0},
        "prediction_psi": 0.0,
        "estimated": {"estimated_pr_auc": estimated},
        "realized": None if realized is None else {"realized_pr_auc": realized},
        "realized_frauds": 50,
        "label_coverage": 0.5,
        "champion_age_days": 3.0,
    }


@pytest.mark.parametrize(
    ("figures", "policy", "check", "level"),
    [
        (report(psi=0.2), {}, "feature_drift", "warn"),
        (report(psi=5.0), {}, "feature_drift", "warn"),  # feature drift alone acts only if set
        (report(psi=0.6), {"feature_drift_act": 0.5}, "feature_drift", "act"),
        (report(estimated=0.07), {}, "estimated_performance", "warn"),
        (report(estimated=0.04), {}, "estimated_performance", "act"),
        (report(), {}, "realized_performance", "pending"),
        (report(realized=0.2), {}, "realized_performance", "ok"),
        (report(realized=0.09), {}, "realized_performance", "act"),
    ],
)
def test_verdicts_follow_the_policy_levels(figures, policy, check, level):
    holdout = {"pr_auc": 0.2, "estimated_pr_auc": 0.1}
    verdicts = {v.check: v for v in judge(figures, holdout, MonitoringPolicy(**policy))}
    assert verdicts[check].level == level
    others = [v.level for name, v in verdicts.items() if name != check]
    assert set(others) <= {"ok", "pending"}


def log_rows(day: str, n: int, source: str = BATCH, **features: float) -> pl.DataFrame:
    time = datetime.datetime.fromisoformat(f"{day}T12:00:00+00:00")
    columns = {
        "request_id": [f"{day}-{i}" for i in range(n)],
        "transaction_id": [str(i) for i in range(n)],
        "customer_id": list(range(n)),
        "amount": [10.0] * n,
        "event_time": [time] * n,
        "day": [day] * n,
        "model_name": ["fraud_model"] * n,
        "model_version": ["1"] * n,
        "variant": ["champion"] * n,
        "source": [source] * n,
        "score": [0.1] * n,
        "threshold": [0.5] * n,
        "decision": [False] * n,
        "logged_at": [time] * n,
        **{name: [value] * n for name, value in features.items()},
    }
    # A batch writer's rows: the online-only columns are left out, and written empty.
    return pl.DataFrame(columns).cast({k: v for k, v in LOG_COLUMNS.items() if k in columns})


def test_prediction_log_replaces_a_day_of_one_source_and_nothing_else(tmp_path):
    log = PredictionLog(url=f"sqlite:///{tmp_path / 'log' / 'p.db'}")
    assert log.read("2026-03-01").is_empty()
    log.replace("2026-03-01", BATCH, log_rows("2026-03-01", 5, a=1.0))
    log.replace("2026-03-02", BATCH, log_rows("2026-03-02", 4, a=1.0))
    log.replace("2026-03-01", "online", log_rows("2026-03-01", 3, "online", a=1.0))
    # A re-run with another model's feature adds the column and replaces only its own rows.
    log.replace("2026-03-01", BATCH, log_rows("2026-03-01", 2, b=2.0))

    day = log.read("2026-03-01")
    assert day.height == 2 and day["b"].to_list() == [2.0, 2.0]
    assert day.schema["event_time"] == pl.Datetime("us", "UTC")
    assert day.schema["decision"] == pl.Boolean
    assert log.read("2026-03-02").height == 4
    assert log.read("2026-03-01", sources=("online",)).height == 3
    with pytest.raises(ValueError, match="day 2026-03-02"):
        log.replace("2026-03-02", BATCH, log_rows("2026-03-01", 1))


def test_prediction_log_writers_queue_for_the_lock_instead_of_failing(tmp_path):
    """The prediction service appends while a scoring run replaces its day: each writer reads
    the table's columns before writing, and SQLite refused such a writer when another had
    written in between ("database is locked", seen in champion_scores)."""
    url = f"sqlite:///{tmp_path / 'p.db'}"
    PredictionLog(url=url).append(log_rows("2026-03-01", 1, "online", a=1.0))
    failures: list[Exception] = []

    def write(times: int, replace: bool) -> None:
        log = PredictionLog(url=url)  # a connection of its own, as in another process
        for _ in range(times):
            try:
                if replace:
                    log.replace("2026-03-02", BATCH, log_rows("2026-03-02", 500, a=1.0))
                else:
                    log.append(log_rows("2026-03-01", 20, "online", a=1.0))
            except Exception as error:  # noqa: BLE001 (every failure is the finding)
                failures.append(error)

    writers = [threading.Thread(target=write, args=(60, i == 0)) for i in range(3)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()

    assert failures == []
    log = PredictionLog(url=url)
    assert log.read("2026-03-01", sources=("online",)).height == 1 + 2 * 60 * 20
    assert log.read("2026-03-02").height == 500


def test_the_drift_report_draws_the_model_features(tmp_path):
    rng = np.random.default_rng(11)
    reference = pl.DataFrame(
        {"txn_count_24h": rng.poisson(3, 2_000), "hour_of_day": rng.integers(0, 24, 2_000)}
    )
    current = reference.with_columns(pl.col("txn_count_24h") * 3)
    path = write_drift_report(
        current,
        reference,
        1_000,
        tmp_path / "report.html",
        numeric_columns=["txn_count_24h", "hour_of_day"],
        categorical_columns=(),
    )
    html = path.read_text()
    assert "txn_count_24h" in html and "hour_of_day" in html
