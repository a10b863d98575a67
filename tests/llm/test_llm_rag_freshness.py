"""The RAG index stays fresh through failures (issue 16 item 11): a failed refresh is requested
again, the lag check runs on its own schedule, and an embeddings outage mid-sync leaves the index
as it was instead of missing the edited documents."""

import datetime

import pytest
from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetSelection,
    DagsterInstance,
    Definitions,
    RunRequest,
    SkipReason,
    build_sensor_context,
    evaluate_automation_conditions,
    load_asset_checks_from_modules,
    load_assets_from_modules,
    materialize,
)
from support.llm_harness import LLM_MODULES, START, LLMStack, remote_embeddings

from platform_assets.llm.rag_index import INDEX_LAG_CHECK
from sensors.automation import automation_sensor
from sensors.llm import rag_index_freshness_sensor
from serving.llm.loopback import LoopbackProvider

pytestmark = pytest.mark.asset_graph
LAG_CHECK = AssetCheckKey(AssetKey("rag_index"), INDEX_LAG_CHECK)


def edit_refunds(stack: LLMStack) -> None:
    path = stack.corpus_dir / "refunds.md"
    stack.edit_document("refunds.md", path.read_text().replace("500 euros", "750 euros"))


def chunks_of(stack: LLMStack, doc_id: str) -> list[str]:
    table = stack.resources["vector_index"].open(stack.resources["embedder"]).table
    rows = table.search().select(["doc_id", "text"]).limit(None).to_list()
    return [row["text"] for row in rows if row["doc_id"] == doc_id]


def requested(result) -> set:
    """Every asset or check key an automation tick requested (its tester counts assets only)."""
    return {r.key for r in result.results if r.true_subset.size}


def run_as_the_sensor_asked(stack: LLMStack, instance: DagsterInstance, request: RunRequest):
    """Launch what the request names, with its tags, as the daemon would."""
    return materialize(
        load_assets_from_modules(LLM_MODULES),
        selection=AssetSelection.assets(*(request.asset_selection or [])),
        resources=stack.resources,
        instance=instance,
        tags=request.tags,
        raise_on_error=False,
    )


def test_an_embeddings_outage_mid_sync_keeps_the_previous_chunks_and_version(tmp_path):
    with LoopbackProvider("embeddings") as endpoint:
        stack = remote_embeddings(tmp_path, endpoint)
    index = stack.resources["vector_index"]
    before = index.version()
    old_chunks = chunks_of(stack, "refunds.md")
    assert old_chunks and "500 euros" in "".join(old_chunks)
    edit_refunds(stack)

    # The endpoint is gone: embedding the edited document fails at the socket.
    with pytest.raises(Exception, match="(?i)connect"):
        stack.sync_index(START + datetime.timedelta(minutes=5))

    assert index.version() == before
    assert chunks_of(stack, "refunds.md") == old_chunks, "the stale chunks were deleted first"


def test_a_failed_refresh_is_requested_again_until_one_succeeds(tmp_path, instance):
    with LoopbackProvider("embeddings") as endpoint:
        stack = remote_embeddings(tmp_path, endpoint)
    edit_refunds(stack)
    context = build_sensor_context(instance=instance, resources=stack.resources)
    first = rag_index_freshness_sensor(context)
    assert isinstance(first, RunRequest)
    assert isinstance(rag_index_freshness_sensor(context), SkipReason), "the run is not over yet"

    failed = run_as_the_sensor_asked(stack, instance, first)
    assert not failed.success

    retry = rag_index_freshness_sensor(context)
    assert isinstance(retry, RunRequest), "a failed refresh must be requested again"
    assert retry.run_key != first.run_key, "the daemon drops a request whose run key was used"
    assert retry.tags["flywheel/trigger"] == "refresh_failed"
    assert retry.tags["flywheel/corpus_version"] == first.tags["flywheel/corpus_version"]
    assert isinstance(rag_index_freshness_sensor(context), SkipReason), "one retry per failure"

    assert not run_as_the_sensor_asked(stack, instance, retry).success
    again = rag_index_freshness_sensor(context)
    assert isinstance(again, RunRequest)
    assert again.run_key not in {first.run_key, retry.run_key}


def test_a_successful_refresh_is_not_requested_again(tmp_path, instance):
    stack = LLMStack(tmp_path)
    stack.sync_index()
    edit_refunds(stack)
    context = build_sensor_context(instance=instance, resources=stack.resources)
    request = rag_index_freshness_sensor(context)
    assert isinstance(request, RunRequest)

    assert run_as_the_sensor_asked(stack, instance, request).success

    skip = rag_index_freshness_sensor(context)
    assert isinstance(skip, SkipReason)
    assert "holds corpus version" in str(skip.skip_message)


def test_the_lag_check_runs_on_its_own_schedule_without_a_refresh(tmp_path, instance):
    stack = LLMStack(tmp_path)
    defs = Definitions(
        assets=load_assets_from_modules(LLM_MODULES),
        asset_checks=load_asset_checks_from_modules(LLM_MODULES),
        resources=stack.resources,
    )
    start = START.replace(minute=1)
    first = evaluate_automation_conditions(defs, instance, AssetSelection.all(), start)
    assert requested(first) == set()

    later = start + datetime.timedelta(minutes=5)
    tick = evaluate_automation_conditions(
        defs, instance, AssetSelection.all(), later, cursor=first.cursor
    )

    assert requested(tick) == {LAG_CHECK}, "the check alone, not a refresh"
    # The daemon's own sensor selects every asset and check, this one included.
    assert LAG_CHECK in automation_sensor.asset_selection.resolve_checks(defs.resolve_asset_graph())
