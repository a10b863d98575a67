"""The evaluation gate judges the model the prompt names, and production meets the same floor.

A golden answer from a fallback (another provider's model or the embedded answerer, after the
prompt's provider failed) says nothing about the prompt on its model: any fallback fails the
gate, naming the provider and its error. A refused key stops the evaluation and alerts. The
production prompt is held to the candidate's correctness floor, and one below it is not
released.
"""

import pytest
from support.llm_harness import USE_CASE, LLMStack, priced, refusing_provider

from platform_assets.llm.golden_set import prompt_gate
from platform_assets.llm.llm_eval_report import CANDIDATE_GATE
from serving.llm.loopback import LoopbackProvider

pytestmark = pytest.mark.asset_graph
LLM_ASSETS = ("prompt_registry", "rag_index", "llm_eval_report", "prompt_release")
NO_CONTEXT = ("{context}", "(no passages)")


def gate_result(result):
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == CANDIDATE_GATE)


def summary_rows(result) -> dict[str, dict[str, str]]:
    """The evaluation's summary table, one row of cells per label."""
    table = result.asset_materializations_for_node("llm_eval_report")[0].metadata["summary"].value
    header, _, *rows = table.splitlines()
    columns = header.strip("| ").split(" | ")
    cells = [dict(zip(columns, row.strip("| ").split(" | "), strict=True)) for row in rows]
    return {row["label"]: row for row in cells}


def test_the_evaluation_says_who_answered_each_prompt(tmp_path, instance):
    stack = LLMStack(tmp_path)
    result = stack.materialize(instance, *LLM_ASSETS)

    assert gate_result(result).passed, "offline the embedded answerer is the provider, no fallback"
    rows = summary_rows(result)
    for label in ("production", "candidate"):
        assert rows[label]["answered_by"] == "embedded/flywheel-extractive: 15"
        assert rows[label]["fallbacks"] == "0"
    verdict = stack.resources["prompts"].latest_evaluation(USE_CASE)
    assert verdict["answered_by"]["candidate"] == {"embedded/flywheel-extractive": 15}
    assert verdict["fallbacks"] == {"production": 0, "candidate": 0}


def test_answers_from_a_fallback_fail_the_gate_naming_the_provider_and_its_error(
    tmp_path, instance
):
    with LoopbackProvider("primary", rates={"500": 1.0}) as primary:
        stack = LLMStack(
            tmp_path, [priced("primary", primary.base_url, "gpt-4o-mini")], failure_threshold=1000
        )
        result = stack.materialize(instance, *LLM_ASSETS)

    gate = gate_result(result)
    assert not gate.passed
    for label in ("production", "candidate"):
        assert (
            f"{label}: 15 of 15 answers came from a fallback (embedded/flywheel-extractive: 15) "
            "after primary/gpt-4o-mini failed (500: 45)"
        ) in (gate.description or "")
    rows = summary_rows(result)
    assert rows["candidate"]["answered_by"] == "embedded/flywheel-extractive: 15"
    assert rows["candidate"]["fallbacks"] == "15"
    assert result.asset_materializations_for_node("prompt_release") == [], "the gate held it"
    verdict = stack.resources["prompts"].latest_evaluation(USE_CASE)
    assert not verdict["passed"] and verdict["fallbacks"] == {"production": 15, "candidate": 15}


def test_a_refused_key_stops_the_evaluation_and_alerts(tmp_path, instance):
    with refusing_provider(401) as refusing:
        stack = LLMStack(tmp_path, [priced("primary", refusing.base_url, "gpt-4o-mini")])
        result = stack.materialize(instance, *LLM_ASSETS)

    assert not result.success
    failure = next(e for e in result.get_step_failure_events() if e.step_key == "llm_eval_report")
    message = failure.step_failure_data.error.message  # type: ignore[union-attr]
    assert "'primary'" in message and "401" in message and "api_key" in message
    assert refusing.requests() == 1, "the evaluation stopped at the first refusal"
    alerts = stack.resources["alerter"].read()
    assert [a["title"] for a in alerts] == ["LLM provider primary refused its credentials (401)"]
    assert stack.resources["prompts"].latest_evaluation(USE_CASE) is None, "no verdict recorded"
    assert result.asset_materializations_for_node("prompt_release") == []


def test_a_production_prompt_below_the_floor_fails_the_gate_and_is_not_released(tmp_path, instance):
    stack = LLMStack(tmp_path)
    assert stack.materialize(instance, *LLM_ASSETS).success
    released = stack.resources["prompts"].release()[USE_CASE]
    stack.edit_prompt("production", *NO_CONTEXT)
    assert stack.materialize(instance, "prompt_registry").success

    run = stack.materialize(instance, "llm_eval_report", "prompt_release")

    gate = gate_result(run)
    assert not gate.passed
    assert "production: correctness 0.00 is below the floor 0.80" in (gate.description or "")
    assert run.asset_materializations_for_node("prompt_release") == [], "the gate held it"
    # Released by hand after all, the use case keeps what was released when production passed.
    assert stack.materialize(instance, "prompt_release").success
    assert stack.resources["prompts"].release()[USE_CASE] == released


def test_production_is_held_to_the_floor_without_a_candidate_too():
    figures = {"correctness": 0.5, "recall_at_k": 1.0}

    assert prompt_gate(figures, None, min_correctness=0.8, tolerance=0.0) == [
        "production: correctness 0.50 is below the floor 0.80"
    ]
