"""How the champion does on a day: estimated before labels, realized after; free of Dagster.

**Estimated** performance is confidence-based, as NannyML's CBPE does it: if the calibrated score
of a payment is its probability of fraud, the expected number of frauds above the threshold is
the sum of those probabilities there, and every metric of the confusion matrix has an expected
value without a single label. It holds while the relation between features and fraud holds, so
it catches covariate shift that hurts the model, not concept drift; the **realized** metrics,
once enough labels have arrived, catch that. scikit-learn is imported where labels are scored,
not by every run process that imports the code location.
"""

import numpy as np
import polars as pl

from platform_assets.model.suite import calibration_error, operating_point


def estimated_pr_auc(scores: np.ndarray, probabilities: np.ndarray) -> float:
    """Expected average precision: each payment counts as fraud with its calibrated probability.

    Ranked by score, the expected precision at rank k is the mean probability of the top k,
    and each payment adds that precision weighted by its own probability of being a fraud.
    """
    order = np.argsort(-scores, kind="stable")
    p = probabilities[order]
    precision_at_k = np.cumsum(p) / np.arange(1, p.size + 1)
    return float((precision_at_k * p).sum() / p.sum())


def estimated_performance(
    scores: np.ndarray, probabilities: np.ndarray, threshold: float
) -> dict[str, float]:
    """Expected precision and recall at ``threshold``, expected PR-AUC, expected fraud rate."""
    flagged = scores >= threshold
    expected_frauds = probabilities.sum()
    caught = probabilities[flagged].sum()
    return {
        "estimated_precision": float(caught / flagged.sum()) if flagged.any() else 0.0,
        "estimated_recall": float(caught / expected_frauds),
        "estimated_pr_auc": estimated_pr_auc(scores, probabilities),
        "estimated_fraud_rate": float(expected_frauds / scores.size),
    }


def realized_performance(
    labels: np.ndarray, scores: np.ndarray, operating_precision: float
) -> dict[str, float]:
    """PR-AUC, recall at the operating precision and calibration error on the known labels."""
    from sklearn.metrics import average_precision_score

    return {
        "realized_pr_auc": float(average_precision_score(labels, scores)),
        "realized_recall_at_precision": operating_point(labels, scores, operating_precision)[0],
        "realized_calibration_error": calibration_error(labels, scores),
        "realized_fraud_rate": float(labels.mean()),
    }


def business_metrics(
    amount: np.ndarray,
    declined: np.ndarray,
    fraud: np.ndarray,
    cost_per_missed_fraud: float,
    cost_per_false_alarm: float,
) -> dict[str, float]:
    """Money caught and missed at the threshold, false alarms, and their cost.

    Args:
        amount: Payment amounts (EUR).
        declined: Whether the model's decision declined the payment.
        fraud: The labels (0/1) or, before labels, the calibrated probabilities: the figures are
            then their expected values.
        cost_per_missed_fraud: Cost of a missed fraud beyond its amount (chargeback fee, handling).
        cost_per_false_alarm: Cost of declining a legitimate payment (review, lost custom).
    """
    legitimate = 1 - fraud
    missed = fraud * ~declined
    false_alarms = float((legitimate * declined).sum())
    return {
        "fraud_amount_caught": float((amount * fraud * declined).sum()),
        "fraud_amount_missed": float((amount * missed).sum()),
        "false_positive_rate": false_alarms / max(float(legitimate.sum()), 1e-12),
        "declined_share": float(declined.mean()),
        "cost": float((amount * missed).sum())
        + float(missed.sum()) * cost_per_missed_fraud
        + false_alarms * cost_per_false_alarm,
    }


def label_delays(transactions: pl.LazyFrame, chargebacks: pl.LazyFrame) -> np.ndarray:
    """Days from each charged-back payment to its chargeback's report, from matured history."""
    return (
        chargebacks.select("transaction_id", "reported_at")
        .join(transactions.select("transaction_id", "event_timestamp"), on="transaction_id")
        .select(
            (pl.col("reported_at").dt.date() - pl.col("event_timestamp").dt.date()).dt.total_days()
        )
        .collect()
        .to_series()
        .to_numpy()
    )


def expected_label_share(delays: np.ndarray, age_days: int, maturity_days: int) -> float:
    """The share of a day's chargebacks that history says have arrived ``age_days`` after it.

    Without history (``delays`` empty), the label policy's word: all of them once the day has
    matured, none before.
    """
    if not delays.size:
        return 1.0 if age_days >= maturity_days else 0.0
    return float((delays <= age_days).mean())
