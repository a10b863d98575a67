"""A/B tests of prompts (must-show 4): the split is sticky and within 1 point of its target, and
the analysis names the winner with a confidence interval, end to end through the gateway."""

import random

import polars as pl
import pytest
from support.llm_harness import USE_CASE, LLMStack

from resources.llm.ab import analyse, assign

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("share", [0.05, 0.1, 0.3, 0.5])
def test_the_split_is_within_one_point_of_its_target(share):
    users = [f"analyst-{n}" for n in range(20_000)]
    on_candidate = sum(assign(USE_CASE, user, share) == "candidate" for user in users)

    assert abs(on_candidate / len(users) - share) <= 0.01


def test_the_split_is_sticky_per_user_and_independent_per_use_case():
    first = {u: assign(USE_CASE, f"u{u}", 0.5) for u in range(1000)}

    assert all(assign(USE_CASE, f"u{u}", 0.5) == v for u, v in first.items())
    other = {u: assign("another_use_case", f"u{u}", 0.5) for u in range(1000)}
    assert other != first, "another use case reshuffles users"
    more = {u: assign(USE_CASE, f"u{u}", 0.6) for u in range(1000)}
    assert all(more[u] == "candidate" for u, v in first.items() if v == "candidate"), (
        "raising the share only moves users onto the candidate"
    )


def simulated(rates: dict[str, float], n: int, seed: int) -> pl.DataFrame:
    rng = random.Random(seed)
    rows = [
        {"variant": variant, "success": int(rng.random() < rate)}
        for variant, rate in rates.items()
        for _ in range(n)
    ]
    return pl.DataFrame(rows)


def test_the_analysis_names_the_better_variant_with_an_interval_excluding_zero():
    result = analyse(simulated({"production": 0.60, "candidate": 0.70}, 3000, seed=1))

    low, high = result["ci"]
    assert result["winner"] == "candidate"
    assert 0 < low < 0.10 < high
    assert result["difference"] == pytest.approx(0.10, abs=0.03)


def test_equal_variants_are_undecided_and_the_interval_covers_zero():
    result = analyse(simulated({"production": 0.6, "candidate": 0.6}, 3000, seed=2))

    low, high = result["ci"]
    assert result["winner"] == "undecided" and low < 0 < high


def test_outcomes_logged_through_the_gateway_reach_the_ab_report(tmp_path, instance):
    stack = LLMStack(tmp_path)
    assert stack.materialize(
        instance, "prompt_registry", "rag_index", "llm_eval_report", "prompt_release"
    ).success
    gateway = stack.gateway()
    rng = random.Random(3)
    variants = {}
    for n in range(1500):
        answer = gateway.answer("Who approves refunds over 500 euros?", USE_CASE, f"user-{n}")
        variants[f"user-{n}"] = answer.variant
        rate = 0.85 if answer.variant == "candidate" else 0.55
        gateway.ledger.record_outcome(
            request_id=answer.request_id,
            use_case=USE_CASE,
            user_id=f"user-{n}",
            variant=answer.variant,
            prompt_version=answer.prompt_version,
            success=int(rng.random() < rate),
        )
    share = sum(v == "candidate" for v in variants.values()) / len(variants)

    report = stack.materialize(instance, "llm_ab_report")

    assert abs(share - 0.1) <= 0.02
    table = report.asset_materializations_for_node("llm_ab_report")[0].metadata["analysis"].value
    header, _, row = table.splitlines()
    cells = dict(zip(header.strip("| ").split(" | "), row.strip("| ").split(" | "), strict=True))
    assert cells["winner"] == "candidate"
    assert 0 < float(cells["ci_low"]) < 0.30 < float(cells["ci_high"])
