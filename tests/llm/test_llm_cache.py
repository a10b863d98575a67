"""The gateway's semantic cache (must-show 2): paraphrases hit, unrelated or negated questions
miss, and nothing is served across prompt or index versions."""

import pytest
from support.llm_harness import USE_CASE, LLMStack, priced

from resources.llm.cache import calibrate_threshold, load_pairs
from resources.llm.embeddings import HashingEmbedder
from resources.llm.gateway import PARAPHRASE_SET
from serving.llm.loopback import LoopbackProvider

pytestmark = pytest.mark.unit
ASKED = "How long is chargeback evidence retained?"


@pytest.fixture
def stack(tmp_path) -> LLMStack:
    stack = LLMStack(tmp_path)
    stack.sync_index()
    return stack


def test_the_threshold_is_calibrated_so_no_labelled_non_paraphrase_hits():
    calibration = calibrate_threshold(HashingEmbedder(), load_pairs(PARAPHRASE_SET))

    assert calibration.false_hits == 0
    assert calibration.paraphrase_hit_rate >= 0.6
    assert 0.5 < calibration.threshold < 1.0


@pytest.mark.parametrize(
    "paraphrase",
    [
        "For how long do we retain chargeback evidence?",
        "chargeback evidence: how long is it retained",
    ],
)
def test_a_paraphrase_above_the_threshold_is_served_from_the_cache(stack, paraphrase):
    gateway = stack.gateway()
    first = gateway.answer(ASKED, USE_CASE, "u1")
    again = gateway.answer(paraphrase, USE_CASE, "u2")

    assert not first.cache_hit and again.cache_hit
    assert again.text == first.text and "18 months" in again.text
    assert again.request_id != first.request_id
    assert gateway.ledger.calls()["cache_hit"].to_list() == [0, 1]


@pytest.mark.parametrize(
    "question",
    [
        "How long are exported customer data files kept?",  # unrelated
        "How long is device fingerprint evidence retained?",  # close, but another thing
        "Is chargeback evidence not retained?",  # negated
    ],
)
def test_an_unrelated_or_negated_question_misses(stack, question):
    gateway = stack.gateway()
    gateway.answer(ASKED, USE_CASE, "u1")

    assert not gateway.answer(question, USE_CASE, "u1").cache_hit


def test_a_different_amount_misses_even_when_the_vectors_are_close(stack):
    gateway = stack.gateway(cache_threshold=0.5)
    gateway.answer("Who must approve refunds over 500 euros?", USE_CASE, "u1")

    assert not gateway.answer("Who must approve refunds over 5000 euros?", USE_CASE, "u1").cache_hit
    assert gateway.answer("who approves refunds over 500 euros", USE_CASE, "u1").cache_hit


def test_a_new_prompt_version_never_gets_an_answer_cached_under_the_old_one(stack):
    gateway = stack.gateway()
    before = gateway.answer(ASKED, USE_CASE, "u1")
    stack.edit_prompt("production", "max_sentences = 2", "max_sentences = 3")
    after = gateway.answer(ASKED, USE_CASE, "u1")

    assert not after.cache_hit and after.prompt_version != before.prompt_version
    assert gateway.answer(ASKED, USE_CASE, "u1").cache_hit, "the new version caches on its own"


def test_a_refreshed_index_never_serves_an_answer_cached_before_it(stack):
    gateway = stack.gateway()
    before = gateway.answer(ASKED, USE_CASE, "u1")
    path = stack.corpus_dir / "chargebacks.md"
    stack.edit_document("chargebacks.md", path.read_text().replace("18 months", "24 months"))
    stack.sync_index()
    after = gateway.answer(ASKED, USE_CASE, "u1")

    assert not after.cache_hit and after.index_version != before.index_version
    assert "24 months" in after.text


def test_an_entry_expires_after_its_ttl(stack):
    gateway = stack.gateway(cache_ttl_seconds=60)
    gateway.answer(ASKED, USE_CASE, "u1")
    stack.time.advance(59)
    assert gateway.answer(ASKED, USE_CASE, "u1").cache_hit
    stack.time.advance(2)
    assert not gateway.answer(ASKED, USE_CASE, "u1").cache_hit


def test_a_hit_costs_nothing_and_records_what_it_saved(tmp_path):
    with LoopbackProvider("primary") as primary:
        stack = LLMStack(tmp_path, [priced("primary", primary.base_url, "gpt-4o-mini")])
        stack.sync_index()
        gateway = stack.gateway()
        paid = gateway.answer(ASKED, USE_CASE, "u1")
        free = gateway.answer(ASKED, USE_CASE, "u2")

    assert primary.requests() == 1
    calls = gateway.ledger.calls()
    assert paid.cost_usd > 0 and free.cost_usd == 0
    assert calls["saved_usd"].to_list() == [0.0, pytest.approx(paid.cost_usd)]


def test_production_and_candidate_keep_their_own_entries_during_an_ab_test(stack, instance):
    released = ("prompt_registry", "rag_index", "llm_eval_report", "prompt_release")
    assert stack.materialize(instance, *released).success
    gateway = stack.gateway()
    users = {gateway.answer(ASKED, USE_CASE, f"u{n}").variant: f"u{n}" for n in range(60)}
    assert set(users) == {"production", "candidate"}

    again = {variant: gateway.answer(ASKED, USE_CASE, user) for variant, user in users.items()}

    assert all(answer.cache_hit for answer in again.values())
    assert again["production"].prompt_version != again["candidate"].prompt_version
