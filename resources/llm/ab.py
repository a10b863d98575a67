"""A/B tests of prompt versions: a sticky split by user, and the analysis of outcomes.

The split hashes (use case, user id) into 10 000 buckets, so a user keeps their variant across
requests, restarts and replicas, and the candidate's share is exact to 0.01 point on the
buckets. The analysis compares success rates with a normal-approximation (Wald) confidence
interval on the difference; a winner is named only when the interval excludes zero.
"""

import hashlib
import math
from statistics import NormalDist
from typing import Any

import polars as pl

BUCKETS = 10_000
VARIANTS = ("production", "candidate")


def assign(use_case: str, user_id: str, candidate_share: float) -> str:
    """``candidate`` for ``candidate_share`` of users (by bucket), ``production`` otherwise."""
    if not 0.0 <= candidate_share <= 1.0:
        raise ValueError(f"candidate_share must be within [0, 1], got {candidate_share}")
    digest = hashlib.sha256(f"{use_case}\x00{user_id}".encode()).digest()
    bucket = int.from_bytes(digest[:8]) % BUCKETS
    return "candidate" if bucket < round(candidate_share * BUCKETS) else "production"


def analyse(outcomes: pl.DataFrame, confidence: float = 0.95) -> dict[str, Any]:
    """Success rate per variant, their difference with a confidence interval, and the winner.

    Args:
        outcomes: One row per outcome with columns ``variant`` and ``success`` (0/1).
        confidence: Two-sided confidence level of the interval.
    """
    stats = {}
    for variant in VARIANTS:
        rows = outcomes.filter(pl.col("variant") == variant)["success"]
        n = rows.len()
        stats[variant] = {"n": n, "successes": int(rows.sum()), "rate": rows.mean() if n else None}
    production, candidate = stats["production"], stats["candidate"]
    result: dict[str, Any] = {"variants": stats, "confidence": confidence}
    if not production["n"] or not candidate["n"]:
        result.update(difference=None, ci=None, winner="undecided: a variant has no outcomes")
        return result
    p1, n1, p2, n2 = production["rate"], production["n"], candidate["rate"], candidate["n"]
    difference = p2 - p1
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    margin = z * math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    low, high = difference - margin, difference + margin
    winner = "candidate" if low > 0 else "production" if high < 0 else "undecided"
    result.update(difference=difference, ci=(low, high), winner=winner)
    return result
