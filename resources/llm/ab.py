"""A/B tests of prompt versions: a sticky split by user, and the analysis of outcomes.

The split hashes (use case, user id) into 10 000 buckets, so a user keeps their variant across
requests, restarts and replicas, and the candidate's share is exact to 0.01 point on the
buckets.

The analysis compares the two released versions only: an arm is the outcomes of one variant
*and* one prompt version, so outcomes of an earlier production or candidate are left out (and
counted), never pooled with the current ones. Each arm's success rate gets a Wilson score
interval and the difference (candidate - production) Newcombe's hybrid score interval, both
from statsmodels: unlike the Wald interval they keep their coverage at small samples and rates
near 0 or 1, where Wald's is zero wide (1/1 against 0/1 "won" with the interval [1, 1]). A
winner is named only when both arms have at least the minimum sample and the interval on the
difference excludes zero.
"""

import hashlib
from typing import Any, cast

import polars as pl

BUCKETS = 10_000
VARIANTS = ("production", "candidate")
# The smallest sample per arm at which a winner may be named. At 100 outcomes a rate near 50 %
# has a 95 % Wilson interval of about +-10 points (and the difference about +-14), so below it
# only a difference far larger than a prompt change makes could be called, and the first few
# users of a variant (often the keenest, or one user's many answers) would decide the test.
MIN_OUTCOMES_PER_ARM = 100


def assign(use_case: str, user_id: str, candidate_share: float) -> str:
    """``candidate`` for ``candidate_share`` of users (by bucket), ``production`` otherwise."""
    if not 0.0 <= candidate_share <= 1.0:
        raise ValueError(f"candidate_share must be within [0, 1], got {candidate_share}")
    digest = hashlib.sha256(f"{use_case}\x00{user_id}".encode()).digest()
    bucket = int.from_bytes(digest[:8]) % BUCKETS
    return "candidate" if bucket < round(candidate_share * BUCKETS) else "production"


def analyse(
    outcomes: pl.DataFrame,
    production_version: str | None,
    candidate_version: str | None,
    min_per_arm: int = MIN_OUTCOMES_PER_ARM,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Success rate per arm, their difference with a confidence interval, and any winner.

    Args:
        outcomes: One row per outcome with columns ``variant``, ``prompt_version`` and
            ``success`` (0/1), of one use case.
        production_version: The released production prompt's version: the production arm
            (None: nothing is released for this use case).
        candidate_version: The released candidate's version (None: no candidate is released).
        min_per_arm: Outcomes each arm needs before a winner may be named.
        confidence: Two-sided confidence level of the intervals.

    Returns:
        ``variants`` (per arm: version, n, successes, rate, Wilson ``ci``), ``excluded`` (outcomes
        of other versions), ``difference`` and its Newcombe ``ci`` (None while an arm is
        empty), ``winner`` (``production``, ``candidate`` or None) and ``verdict``, a sentence
        with the figures.
    """
    # Imported on use: statsmodels takes a second to import, and the gateway imports ``assign``.
    from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

    if min_per_arm < 1:
        raise ValueError(f"min_per_arm must be at least 1, got {min_per_arm}")
    alpha = 1 - confidence
    versions = {"production": production_version, "candidate": candidate_version}
    stats: dict[str, dict[str, Any]] = {}
    for variant, version in versions.items():
        arm = outcomes.filter(
            (pl.col("variant") == variant) & (pl.col("prompt_version") == version)
        )["success"]
        n, successes = arm.len(), int(arm.sum())
        # Scalar counts in, two floats out (the stubs allow arrays and frames too).
        ci = cast(
            tuple[float, float] | None,
            proportion_confint(successes, n, alpha=alpha, method="wilson") if n else None,
        )
        stats[variant] = {
            "version": version,
            "n": n,
            "successes": successes,
            "rate": successes / n if n else None,
            "ci": (float(ci[0]), float(ci[1])) if ci else None,
        }
    production, candidate = stats["production"], stats["candidate"]
    result: dict[str, Any] = {
        "variants": stats,
        "excluded": outcomes.height - production["n"] - candidate["n"],
        "confidence": confidence,
        "min_per_arm": min_per_arm,
        "difference": None,
        "ci": None,
        "winner": None,
    }
    if production_version is None or candidate_version is None:
        return {**result, "verdict": "no candidate released: nothing to compare"}
    if production["n"] and candidate["n"]:
        low, high = confint_proportions_2indep(
            candidate["successes"],
            candidate["n"],
            production["successes"],
            production["n"],
            method="newcomb",
            compare="diff",
            alpha=alpha,
        )
        result["difference"] = candidate["rate"] - production["rate"]
        result["ci"] = (float(low), float(high))
    figures = (
        f"production {production['successes']}/{production['n']}, "
        f"candidate {candidate['successes']}/{candidate['n']}"
    )
    if min(production["n"], candidate["n"]) < min_per_arm:
        verdict = (
            f"insufficient sample: {figures}; {min_per_arm} outcomes per arm are needed before "
            "a winner is named"
        )
        return {**result, "verdict": verdict}
    low, high = result["ci"]
    interval = f"{confidence:.0%} interval on the difference {low:+.3f} to {high:+.3f}"
    winner = "candidate" if low > 0 else "production" if high < 0 else None
    verdict = (
        f"{winner} wins: {figures}, {interval}"
        if winner
        else f"undecided: {figures}, {interval} includes zero"
    )
    return {**result, "winner": winner, "verdict": verdict}
