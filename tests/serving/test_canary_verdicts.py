"""The canary verdict: each comparison waits for its sample, any limit crossed rolls back, and a
promotion needs the soak, the predictions and every operational comparison judged."""

import numpy as np
import polars as pl
import pytest

from platform_assets.ingestion.drift import decile_bins
from platform_assets.model.canary import ESTIMATE, Traffic, compare, decide
from platform_assets.monitoring.performance import estimated_pr_auc
from platform_assets.monitoring.reference import calibrate
from resources.release_policy import ReleasePolicy

pytestmark = pytest.mark.unit

POLICY = ReleasePolicy(min_sample=200, min_canary_predictions=500, min_labelled_frauds=10)
IDENTITY = {"x": [0.0, 1.0], "y": [0.0, 1.0]}


def scored(n: int, rng: np.random.Generator, skill: float) -> tuple[np.ndarray, np.ndarray]:
    """Payments (5 % fraud) and a model's scores, which separate the frauds by ``skill``."""
    fraud = rng.random(n) < 0.05
    return fraud, 1 / (1 + np.exp(-(rng.normal(size=n) - 3 + skill * fraud)))


def traffic(
    n: int,
    seed: int,
    latency_ms: float = 1.0,
    errors: int = 0,
    skill: float = 4.0,
    holdout_skill: float | None = None,
    calibration: dict = IDENTITY,
):
    """A variant's live traffic and the reference of its model, whose holdout had the live
    traffic's skill unless ``holdout_skill`` says otherwise."""
    rng = np.random.default_rng(seed)
    fraud, scores = scored(n, rng, skill)
    _, holdout = scored(20_000, rng, skill if holdout_skill is None else holdout_skill)
    ids = [f"{seed}-{i}" for i in range(n)]
    rows = pl.DataFrame(
        {
            "transaction_id": ids,
            "score": scores,
            "latency_ms": rng.normal(latency_ms, latency_ms / 10, size=n),
            "error": [("boom" if i < errors else None) for i in range(n)],
        }
    )
    reference = {
        "calibration": calibration,
        "scores": decile_bins(pl.Series(holdout)),
        "holdout": {"estimated_pr_auc": estimated_pr_auc(holdout, calibrate(holdout, calibration))},
    }
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
        # Live scores that lost the skill the model had on its holdout.
        (traffic(800, 2, skill=1.0, holdout_skill=4.0), ESTIMATE),
    ],
)
def test_a_canary_past_any_limit_is_rolled_back(canary, metric):
    (outcome, why), comparisons = verdict(traffic(8_000, 1), canary, soak=1)

    assert outcome == "rollback"
    assert comparisons[metric].judgement == "rollback"
    assert why.startswith(metric) or f"; {metric}" in why


def test_a_champion_whose_calibration_flatters_it_does_not_roll_back_a_healthy_canary():
    """After a concept drift the champion's calibration overstates its frauds: its estimate is
    read against its own holdout's, not against the canary's."""
    flattering = {"x": [0.0, 0.3, 1.0], "y": [0.0, 0.9, 1.0]}
    champion = traffic(8_000, 1, calibration=flattering)
    canary = traffic(800, 2)
    estimates = [
        estimated_pr_auc(t.rows["score"].to_numpy(), calibrate(t.rows["score"].to_numpy(), c))
        for t, c in ((champion, flattering), (canary, IDENTITY))
    ]
    assert estimates[1] < 0.7 * estimates[0]  # the two estimates compared: a rollback

    (outcome, _), comparisons = verdict(champion, canary)

    assert comparisons[ESTIMATE].judgement == "ok"
    assert outcome == "promote"


def test_an_estimate_over_too_few_expected_frauds_waits_and_does_not_hold_the_promotion():
    champion, canary = traffic(8_000, 1), traffic(800, 2)
    rare = {"x": [0.0, 1.0], "y": [0.0, 0.01]}  # 800 payments, a few expected frauds
    canary = Traffic(canary.rows, {**canary.reference, "calibration": rare}, canary.labelled)

    (outcome, _), comparisons = verdict(champion, canary)

    assert comparisons[ESTIMATE].judgement == "waiting"
    assert "expected frauds" in comparisons[ESTIMATE].samples
    assert outcome == "promote"
