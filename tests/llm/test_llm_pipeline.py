"""The LLM assets and their automation (must-show 3): a prompt change triggers the evaluation,
which blocks a worse candidate; a corpus edit makes the index stale and the sensor refreshes it
within the freshness SLO."""

import datetime
import os

import pytest
from dagster import (
    AssetCheckKey,
    AssetKey,
    RunRequest,
    SkipReason,
    build_sensor_context,
)
from support.llm_harness import START, USE_CASE, LLMStack

from platform_assets.llm.llm_eval_report import CANDIDATE_GATE
from platform_assets.llm.rag_index import INDEX_LAG_CHECK
from resources.clock import Clock
from sensors.llm import prompt_change_sensor, rag_index_freshness_sensor

pytestmark = pytest.mark.asset_graph
LLM_ASSETS = ("prompt_registry", "rag_index", "llm_eval_report", "prompt_release")
# A candidate that forgets to give the model the retrieved passages: it cannot answer.
NO_CONTEXT = ("{context}", "(no passages)")


def requested(result) -> set[str]:
    return {
        key.to_user_string() for key in map(AssetKey, LLM_ASSETS) if result.get_num_requested(key)
    }


def gate_result(result):
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == CANDIDATE_GATE)


@pytest.fixture
def stack(tmp_path) -> LLMStack:
    return LLMStack(tmp_path)


def test_the_shipped_prompts_pass_the_gate_and_the_candidate_is_released(stack, instance):
    result = stack.materialize(instance, *LLM_ASSETS)

    assert result.success
    assert gate_result(result).passed
    release = stack.resources["prompts"].release()[USE_CASE]
    current = stack.resources["prompts"].current()[USE_CASE]
    assert release["production"] == current["production"].version
    assert release["candidate"] == current["candidate"].version
    assert release["candidate_share"] == 0.1
    verdict = stack.resources["prompts"].latest_evaluation(USE_CASE)
    assert verdict["figures"]["production"]["correctness"] >= 0.8
    assert verdict["figures"]["production"]["recall_at_k"] == 1.0


def test_a_prompt_change_triggers_the_evaluation_which_blocks_a_worse_candidate(stack, instance):
    assert stack.materialize(instance, *LLM_ASSETS).success
    settled = stack.automation(instance)
    released_before = stack.resources["prompts"].release()[USE_CASE]["candidate"]

    sensor_context = build_sensor_context(instance=instance, resources=stack.resources)
    assert isinstance(prompt_change_sensor(sensor_context), SkipReason)
    stack.edit_prompt("candidate", *NO_CONTEXT)
    request = prompt_change_sensor(sensor_context)
    assert isinstance(request, RunRequest)
    assert request.asset_selection == [AssetKey("prompt_registry")]
    assert request.tags["flywheel/prompts"] == f"{USE_CASE}/candidate"

    registry = stack.materialize(instance, "prompt_registry")
    assert registry.success
    history = registry.asset_materializations_for_node("prompt_registry")[0].metadata
    worse = stack.resources["prompts"].current()[USE_CASE]["candidate"].version
    lines = history["label_history"].value.splitlines()
    assert f"| candidate | {worse} |" in lines[2], "the newest label move is listed first"
    assert f"| candidate | {released_before} |" in "\n".join(lines[3:]), "the old one stays"
    after_registry = stack.automation(instance, cursor=settled.cursor)
    # Eager automation asks for the evaluation and the release together, in one run.
    assert requested(after_registry) == {"llm_eval_report", "prompt_release"}

    run = stack.materialize(instance, "llm_eval_report", "prompt_release")
    gate = gate_result(run)
    assert not gate.passed
    assert "correctness" in gate.description and "worse than production" in gate.description
    assert run.asset_materializations_for_node("prompt_release") == [], "the gate held it"
    next_tick = stack.automation(instance, cursor=after_registry.cursor)
    assert "prompt_release" not in requested(next_tick), "and it stays held on later ticks"

    gateway = stack.gateway()
    served = {
        gateway.answer("Who approves refunds?", USE_CASE, f"u{n}").prompt_version
        for n in range(300)
    }
    assert worse not in served
    assert released_before in served, "the last approved candidate keeps its share"


def test_a_better_candidate_passes_and_is_released_by_automation(stack, instance):
    assert stack.materialize(instance, *LLM_ASSETS).success
    settled = stack.automation(instance)
    stack.edit_prompt("candidate", "max_sentences = 2", "max_sentences = 3")
    assert stack.materialize(instance, "prompt_registry").success
    tick = stack.automation(instance, cursor=settled.cursor)
    assert requested(tick) == {"llm_eval_report", "prompt_release"}

    run = stack.materialize(instance, "llm_eval_report", "prompt_release")
    assert gate_result(run).passed
    assert len(run.asset_materializations_for_node("prompt_release")) == 1

    new = stack.resources["prompts"].current()[USE_CASE]["candidate"].version
    assert stack.resources["prompts"].release()[USE_CASE]["candidate"] == new


def test_a_corpus_edit_makes_the_index_stale_and_the_sensor_refreshes_it_within_the_slo(
    stack, instance
):
    first = stack.materialize(instance, "rag_index")
    assert first.success
    context = build_sensor_context(instance=instance, resources=stack.resources)
    assert isinstance(rag_index_freshness_sensor(context), SkipReason)

    edited_at = START + datetime.timedelta(minutes=10)
    path = stack.corpus_dir / "refunds.md"
    stack.edit_document("refunds.md", path.read_text().replace("500 euros", "750 euros"))
    os.utime(path, (edited_at.timestamp(), edited_at.timestamp()))
    tick = edited_at + datetime.timedelta(seconds=30)
    stack.resources["clock"] = Clock(frozen_at=tick.isoformat())
    context = build_sensor_context(instance=instance, resources=stack.resources)

    request = rag_index_freshness_sensor(context)
    assert isinstance(request, RunRequest)
    assert request.asset_selection == [AssetKey("rag_index")]
    assert request.tags["flywheel/stale_documents"] == "refunds.md"
    assert request.tags["flywheel/lag_seconds"] == "30"
    assert isinstance(rag_index_freshness_sensor(context), SkipReason), "requested only once"

    run_at = tick + datetime.timedelta(seconds=20)
    stack.resources["clock"] = Clock(frozen_at=run_at.isoformat())
    refresh = stack.materialize(instance, "rag_index")
    assert refresh.success
    metadata = refresh.asset_materializations_for_node("rag_index")[0].metadata
    slo_seconds = stack.resources["vector_index"].max_lag_minutes * 60
    assert metadata["lag_at_refresh_seconds"].value == 50 <= slo_seconds
    assert metadata["updated"].value == ["refunds.md"]
    assert metadata["chunks_embedded"].value == 1, "only the edited document was re-embedded"
    lag_check = next(
        e for e in refresh.get_asset_check_evaluations() if e.check_name == INDEX_LAG_CHECK
    )
    assert lag_check.passed
    context = build_sensor_context(instance=instance, resources=stack.resources)
    assert isinstance(rag_index_freshness_sensor(context), SkipReason)
    answer = stack.gateway().answer("Who must approve refunds over 750 euros?", USE_CASE, "u1")
    assert "750 euros" in answer.text


def test_an_index_left_behind_past_its_slo_fails_the_check_and_alerts(stack, instance):
    assert stack.materialize(instance, "rag_index").success
    path = stack.corpus_dir / "refunds.md"
    stack.edit_document("refunds.md", path.read_text() + "\nA new rule.\n")
    os.utime(path, (START.timestamp(), START.timestamp()))
    late = START + datetime.timedelta(minutes=20)
    stack.resources["clock"] = Clock(frozen_at=late.isoformat())

    result = stack.materialize(instance, AssetCheckKey(AssetKey("rag_index"), INDEX_LAG_CHECK))

    evaluation = result.get_asset_check_evaluations()[0]
    assert not evaluation.passed
    assert evaluation.metadata["lag_seconds"].value == 1200
    assert evaluation.metadata["stale_documents"].value == ["refunds.md"]
    assert stack.resources["alerter"].read()[0]["title"] == "rag_index is behind its freshness SLO"


def test_a_new_index_version_triggers_the_evaluation_too(stack, instance):
    assert stack.materialize(instance, *LLM_ASSETS).success
    settled = stack.automation(instance)
    path = stack.corpus_dir / "escalation.md"
    stack.edit_document("escalation.md", path.read_text().replace("15 minutes", "10 minutes"))

    assert stack.materialize(instance, "rag_index").success
    tick = stack.automation(instance, cursor=settled.cursor)

    assert requested(tick) == {"llm_eval_report", "prompt_release"}
