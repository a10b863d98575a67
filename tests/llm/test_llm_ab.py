"""A/B tests of prompts (must-show 4): the split is sticky and within 1 point of its target, and
the analysis names the winner with a confidence interval, end to end through the gateway.

The analysis compares the released versions only (outcomes of earlier versions are left out, not
pooled), with Wilson intervals per arm and Newcombe's interval on the difference (never zero
wide at a rate of 0 or 1), and names no winner below the minimum sample per arm.
"""

import random

import polars as pl
import pytest
from support.llm_harness import USE_CASE, LLMStack

from resources.llm.ab import MIN_OUTCOMES_PER_ARM, analyse, assign

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


VERSIONS = {"production": "prod-v1", "candidate": "cand-v1"}


def simulated(rates: dict[str, float], n: int, seed: int) -> pl.DataFrame:
    rng = random.Random(seed)
    rows = [
        {
            "variant": variant,
            "prompt_version": VERSIONS[variant],
            "success": int(rng.random() < rate),
        }
        for variant, rate in rates.items()
        for _ in range(n)
    ]
    return pl.DataFrame(rows)


def counted(**arms: tuple[str, int, int]) -> pl.DataFrame:
    """Outcomes from counts: ``arm=(version, successes, failures)``, arm being the variant."""
    rows = [
        {"variant": variant.split("_")[0], "prompt_version": version, "success": success}
        for variant, (version, successes, failures) in arms.items()
        for success in [1] * successes + [0] * failures
    ]
    return pl.DataFrame(
        rows, schema={"variant": pl.String, "prompt_version": pl.String, "success": pl.Int64}
    )


def released(frame: pl.DataFrame, **options) -> dict:
    return analyse(frame, VERSIONS["production"], VERSIONS["candidate"], **options)


def test_the_analysis_names_the_better_variant_with_an_interval_excluding_zero():
    result = released(simulated({"production": 0.60, "candidate": 0.70}, 3000, seed=1))

    low, high = result["ci"]
    assert result["winner"] == "candidate"
    assert 0 < low < 0.10 < high
    assert result["difference"] == pytest.approx(0.10, abs=0.03)


def test_equal_variants_are_undecided_and_the_interval_covers_zero():
    result = released(simulated({"production": 0.6, "candidate": 0.6}, 3000, seed=2))

    low, high = result["ci"]
    assert result["winner"] is None and low < 0 < high
    assert result["verdict"].startswith("undecided")


def test_one_outcome_per_arm_is_an_insufficient_sample_not_a_winner():
    # The Wald interval of 1/1 against 0/1 is (1, 1): zero wide, so it named the candidate.
    result = released(counted(production=("prod-v1", 0, 1), candidate=("cand-v1", 1, 0)))

    assert result["winner"] is None
    assert result["verdict"] == (
        f"insufficient sample: production 0/1, candidate 1/1; {MIN_OUTCOMES_PER_ARM} outcomes "
        "per arm are needed before a winner is named"
    )
    assert result["variants"]["candidate"]["n"] == 1 and result["difference"] == 1.0


def test_below_the_minimum_no_winner_even_with_a_clear_interval():
    frame = counted(production=("prod-v1", 10, 90), candidate=("cand-v1", 90, 10))

    assert released(frame, min_per_arm=101)["winner"] is None
    assert released(frame, min_per_arm=100)["winner"] == "candidate"


def test_the_difference_has_newcombes_interval_and_each_rate_wilsons():
    # Newcombe (1998), Statistics in Medicine 17:873, table II example (a): 56/70 against 48/80.
    frame = counted(production=("prod-v1", 48, 32), candidate=("cand-v1", 56, 14))

    result = released(frame, min_per_arm=1)

    assert result["ci"] == pytest.approx((0.0524, 0.3339), abs=5e-5)
    # and Wilson's score interval for 56/70, the interval Newcombe's hybrid is built from.
    assert result["variants"]["candidate"]["ci"] == pytest.approx((0.6918, 0.8770), abs=5e-5)


def test_at_a_rate_of_one_the_interval_is_not_zero_wide():
    frame = counted(production=("prod-v1", 150, 0), candidate=("cand-v1", 150, 0))

    result = released(frame)

    low, high = result["ci"]
    assert low < 0 < high and high - low > 0.04
    assert result["winner"] is None
    assert result["variants"]["production"]["ci"][0] < 1.0


def test_outcomes_of_other_prompt_versions_are_left_out_not_pooled():
    frame = counted(
        production=("prod-v1", 180, 120),
        production_old=("prod-v0", 0, 200),
        candidate=("cand-v1", 48, 72),
        candidate_old=("cand-v0", 285, 15),
    )

    result = released(frame)

    assert result["variants"]["candidate"] == {
        "version": "cand-v1",
        "n": 120,
        "successes": 48,
        "rate": 0.4,
        "ci": pytest.approx((0.3168, 0.4894), abs=5e-5),
    }
    assert result["excluded"] == 500
    assert result["winner"] == "production", "the old candidate's 95 % does not count"


def ab_table(result) -> dict[str, str]:
    """The single use case's row of the llm_ab_report table."""
    table = result.asset_materializations_for_node("llm_ab_report")[0].metadata["analysis"].value
    header, _, row = table.splitlines()
    return dict(zip(header.strip("| ").split(" | "), row.strip("| ").split(" | "), strict=True))


@pytest.fixture
def released_stack(tmp_path, instance) -> LLMStack:
    """The LLM stack once its prompts were evaluated and released (a production and a candidate)."""
    stack = LLMStack(tmp_path)
    assert stack.materialize(
        instance, "prompt_registry", "rag_index", "llm_eval_report", "prompt_release"
    ).success
    return stack


def record_outcomes(stack: LLMStack, arms: dict[tuple[str, str], tuple[int, int]]) -> None:
    """Log (successes, failures) outcomes per (variant, prompt version) in the stack's ledger."""
    ledger = stack.resources["llm_ledger"].open()
    for (variant, version), (successes, failures) in arms.items():
        for n, success in enumerate([1] * successes + [0] * failures):
            ledger.record_outcome(
                request_id=f"{variant}-{version}-{n}",
                use_case=USE_CASE,
                user_id=f"user-{n}",
                variant=variant,
                prompt_version=version,
                success=success,
            )
    ledger.close()


def test_the_report_compares_the_released_versions_only(released_stack, instance):
    release = released_stack.resources["prompts"].release()[USE_CASE]
    record_outcomes(
        released_stack,
        {
            ("production", release["production"]): (180, 120),
            ("production", "an-earlier-production"): (0, 200),
            ("candidate", release["candidate"]): (48, 72),
            ("candidate", "an-earlier-candidate"): (285, 15),
        },
    )

    cells = ab_table(released_stack.materialize(instance, "llm_ab_report"))

    assert (cells["production_version"], cells["candidate_version"]) == (
        release["production"],
        release["candidate"],
    )
    assert (cells["production_n"], cells["candidate_n"], cells["excluded"]) == ("300", "120", "500")
    assert cells["winner"] == "production"


def test_the_report_names_no_winner_on_one_outcome_per_arm(released_stack, instance):
    release = released_stack.resources["prompts"].release()[USE_CASE]
    record_outcomes(
        released_stack,
        {
            ("production", release["production"]): (0, 1),
            ("candidate", release["candidate"]): (1, 0),
        },
    )

    cells = ab_table(released_stack.materialize(instance, "llm_ab_report"))

    assert cells["winner"] == "none"
    assert cells["verdict"].startswith("insufficient sample: production 0/1, candidate 1/1")


def test_outcomes_logged_through_the_gateway_reach_the_ab_report(released_stack, instance):
    gateway = released_stack.gateway()
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

    report = released_stack.materialize(instance, "llm_ab_report")

    assert abs(share - 0.1) <= 0.02
    cells = ab_table(report)
    assert cells["winner"] == "candidate"
    assert 0 < float(cells["ci_low"]) < 0.30 < float(cells["ci_high"])
