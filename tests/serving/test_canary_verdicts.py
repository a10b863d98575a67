"""The canary verdict: each comparison waits for its sample, any limit crossed rolls back, and a
promotion needs the soak, the predictions and every operational comparison judged."""

import numpy as np
import polars as pl
import pytest

from platform_assets.ingestion.drift import decile_bins
from platform_assets.model.canary import Traffic, compare, decide
from resources.release_policy import ReleasePolicy

pytestmark = pytest.mark.unit

POLICY = ReleasePolicy(min_sample=200, min_canary_predictions=500, min_labelled_frauds=10)
IDENTITY = {"x": [0.0, 1.0], "y": [0.0, 1.0]}


def traffic(n: int, seed: int, latency_ms: float = 1.0, errors: int = 0, skill: float = 4.0):
    rng = np.random.default_rng(seed)
    fraud = rng.random(n) < 0.05
    scores = 1 / (1 + np.exp(-(rng.normal(size=n) - 3 + skill * fraud)))
    ids = [f"{seed}-{i}" for i in range(n)]
    rows = pl.DataFrame(
        {
            "transaction_id": ids,
            "score": scores,
            "latency_ms": rng.normal(latency_ms, latency_ms / 10, size=n),
            "error": [("boom" if i < errors else None) for i in range(n)],
        }
    )
    reference = {"calibration": IDENTITY, "scores": decile_bins(pl.Series(scores))}
    return Traffic(rows, reference, dict(zip(ids, fraud.astype(int).tolist(), strict=True)))


def verdict(champion: Traffic, canary: Traffic, soak: float = 30.0):
    comparisons = compare(champion, canary, 0.5, POLICY)
    served = canary.rows.filter(pl.col("error").is_null()).height
    return decide(comparisons, soak, served, POLICY), {c.metric: c for c in comparisons}


def test_a_healthy_canary_is_promoted_only_after_the_soak():
    champion, canary = traffic(8_000, 1), traffic(800, 2)

    (early, why), _ = verdict(champion, canary, soak=3)
    (late, _), comparisons = verdict(champion, canary)

    assert (early, why) == ("continue", "waiting for soak 3.0 of 24 h")
    assert late == "promote"
    assert {c.judgement for c in comparisons.values()} == {"ok"}


def test_too_few_predictions_wait_and_never_promote():
    (outcome, why), comparisons = verdict(traffic(8_000, 1), traffic(150, 2))

    assert outcome == "continue"
    assert "150 of 500 predictions" in why and "too few predictions to judge" in why
    assert comparisons["p99_latency_ms"].judgement == "waiting"


@pytest.mark.parametrize(
    ("canary", "metric"),
    [
        (traffic(800, 2, latency_ms=20), "p99_latency_ms"),
        (traffic(800, 2, errors=40), "error_rate"),
        (traffic(800, 2, skill=0.0), "realized_pr_auc"),
    ],
)
def test_a_canary_past_any_limit_is_rolled_back(canary, metric):
    (outcome, why), comparisons = verdict(traffic(8_000, 1), canary, soak=1)

    assert outcome == "rollback"
    assert comparisons[metric].judgement == "rollback"
    assert why.startswith(metric) or f"; {metric}" in why
