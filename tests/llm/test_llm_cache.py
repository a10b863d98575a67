"""The gateway's semantic cache (must-show 2): paraphrases hit, unrelated or negated questions
miss, and nothing is served across prompt or index versions."""

import random
import threading
import time

import numpy as np
import pytest
from support.llm_harness import USE_CASE, LLMStack, priced

from resources.llm.cache import SemanticCache, calibrate_threshold, load_pairs
from resources.llm.embeddings import HashingEmbedder
from resources.llm.gateway import PARAPHRASE_SET
from serving.llm.loopback import LoopbackProvider

pytestmark = pytest.mark.unit
ASKED = "How long is chargeback evidence retained?"


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


def test_concurrent_stores_evictions_and_lookups_never_serve_another_questions_answer():
    """Lookups race stores that evict (a full scope drops its oldest entry): a hit is always
    the entry of the question looked up. The clock yields the GIL where a lookup used to read
    its entries outside the lock, which made a concurrent eviction shift them under it."""

    def slow_clock() -> float:
        time.sleep(0)  # let another thread run here, as a loaded server would
        return time.monotonic()

    # Letters, not numbers: the number guard would reject a wrong entry and hide the race.
    questions = [f"question number {chr(97 + n % 26)}{chr(97 + n // 26)}" for n in range(40)]
    rows = np.random.default_rng(7).normal(size=(len(questions), 64))
    unit = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    vectors = dict(zip(questions, unit, strict=True))
    cache = SemanticCache(threshold=0.99, ttl_seconds=3600, now=slow_clock, max_entries_per_scope=8)
    scope = (USE_CASE, "prompt-v1", "index-v1")
    stop = threading.Event()
    wrong: list[tuple[str, str]] = []
    hits = [0]

    def store() -> None:
        for n in range(4_000):
            question = questions[n % len(questions)]
            cache.store(scope, question, vectors[question], {"q": question}, 0.0)
        stop.set()

    def lookup(seed: int) -> None:
        draw = random.Random(seed)
        while not stop.is_set():
            question = draw.choice(questions)
            hit = cache.lookup(scope, question, vectors[question])
            if hit is not None:
                hits[0] += 1
                if hit[0].question != question or hit[0].payload["q"] != question:
                    wrong.append((question, hit[0].question))

    threads = [threading.Thread(target=store)] + [
        threading.Thread(target=lookup, args=(seed,)) for seed in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert hits[0] > 100, "the lookups did hit while the stores evicted"
    assert not wrong, f"{len(wrong)} lookups got another question's entry, e.g. {wrong[0]}"
    assert cache.size() == 8
