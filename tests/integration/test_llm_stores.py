"""The LLM cost ledger and the prompt registry's store on PostgreSQL, as production runs them.

Each test gets a new database (``new_database``); several writers (threads, or ledger instances
as gateway replicas would hold) share it. PostgreSQL comes from ``.ci/services``; without it the
module is skipped, saying why.
"""

import datetime
import threading
from pathlib import Path

import pytest
from support.engines import new_database, unavailable

from resources.environments import PROJECT_ROOT
from resources.llm.environments import PROMPTS
from resources.llm.ledger import LLMLedger
from resources.llm.prompts import PromptRegistry

UNAVAILABLE = unavailable()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(UNAVAILABLE is not None, reason=f"integration tier: {UNAVAILABLE}"),
]

USE_CASE = "fraud_ops_assistant"
DAY = datetime.datetime(2026, 11, 20, tzinfo=datetime.UTC)


def call(request_id: str, at: datetime.datetime, use_case: str = USE_CASE, tokens: int = 1000):
    return {
        "at": at.isoformat(),
        "request_id": request_id,
        "use_case": use_case,
        "endpoint": "chat",
        "provider": "primary",
        "model": "gpt-4o-mini",
        "prompt_version": "abc123",
        "variant": "production",
        "user_id": "u1",
        "prompt_tokens": tokens,
        "completion_tokens": tokens // 2,
        "cost_usd": tokens * 0.15 / 1e6 + tokens // 2 * 0.60 / 1e6,
        "cache_hit": 0,
        "saved_usd": 0.0,
        "latency_ms": 12.5,
        "fallbacks": 0,
    }


def outcome(request_id: str, success: int) -> dict:
    return {
        "request_id": request_id,
        "use_case": USE_CASE,
        "user_id": "u1",
        "variant": "production",
        "prompt_version": "abc123",
        "success": success,
    }


@pytest.fixture
def ledger_url() -> str:
    return new_database("llm")


def test_the_ledger_records_calls_and_sums_spend_on_postgresql(ledger_url):
    ledger = LLMLedger(url=ledger_url).open()
    try:
        yesterday = DAY - datetime.timedelta(hours=1)
        ledger.record_call(**call("r0", yesterday, tokens=9000))
        ledger.record_call(**call("r1", DAY))
        ledger.record_call(**call("r2", DAY + datetime.timedelta(microseconds=1), tokens=2000))
        ledger.record_call(**call("r3", DAY + datetime.timedelta(hours=3), "other"))
        ledger.record_call(**{k: v for k, v in call("r4", DAY).items() if k != "at"})  # now

        calls = ledger.calls(since=DAY.isoformat())
        spend = ledger.spend_since(DAY.isoformat())
        found = ledger.find_call("r2")
    finally:
        ledger.close()
    reopened = LLMLedger(url=ledger_url).open()  # another process, e.g. the cost report
    try:
        everything, missing = reopened.calls(), reopened.find_call("missing")
    finally:
        reopened.close()

    assert sorted(calls["request_id"]) == ["r1", "r2", "r3", "r4"]
    assert calls.schema["cost_usd"].is_float() and calls.schema["prompt_tokens"].is_integer()
    each = call("r1", DAY)["cost_usd"]
    assert spend[USE_CASE] == pytest.approx(each * 2 + call("r2", DAY, tokens=2000)["cost_usd"])
    assert spend["other"] == pytest.approx(each)
    assert found == call("r2", DAY + datetime.timedelta(microseconds=1), tokens=2000)
    assert everything.height == 5 and missing is None


def test_racing_writers_record_one_outcome_per_request(ledger_url):
    """Gateway replicas (two ledger instances) and request threads all answer the same feedback:
    READ COMMITTED would let two check-then-insert writers both insert; the unique index cannot."""
    replicas = [LLMLedger(url=ledger_url).open() for _ in range(2)]
    requests = [f"r{n}" for n in range(20)]
    start = threading.Barrier(8)
    recorded: list[tuple[str, bool]] = []
    lock = threading.Lock()

    def feedback(writer: int) -> None:
        ledger = replicas[writer % 2]
        start.wait()
        for request_id in requests:
            done = ledger.record_outcome(**outcome(request_id, writer % 2))
            with lock:
                recorded.append((request_id, done))

    threads = [threading.Thread(target=feedback, args=(n,)) for n in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        outcomes = replicas[0].outcomes()
    finally:
        for ledger in replicas:
            ledger.close()

    assert len(recorded) == 8 * len(requests)
    for request_id in requests:
        assert [done for r, done in recorded if r == request_id].count(True) == 1, request_id
    assert sorted(outcomes["request_id"]) == sorted(requests), "exactly one outcome per request"


def test_a_store_url_names_its_database_without_the_password():
    registry = PromptRegistry(source_dir=".", store_url="postgresql://flywheel:s3cret@db/llm")

    assert registry.store_location() == "postgresql://flywheel:***@db/llm"


def test_prompt_versions_history_and_release_round_trip_between_registries(tmp_path):
    url = new_database("llm")
    source = str(PROJECT_ROOT / PROMPTS)
    registry = PromptRegistry(source_dir=source, store_url=url)
    files = registry.read_files()

    first = registry.record(files, DAY)
    again = registry.record(files, DAY + datetime.timedelta(hours=1))
    registry.record_evaluation({"use_case": USE_CASE, "passed": True, "score": 0.9})
    production = files[USE_CASE]["production"]
    registry.write_release({USE_CASE: {"production": production.version, "candidate": None}})

    other = PromptRegistry(source_dir=source, store_url=url)  # e.g. a gateway replica
    assert [e["label"] for e in first] == sorted(files[USE_CASE])
    assert all(e["previous"] is None and e["at"] == DAY.isoformat() for e in first)
    assert again == [], "an unchanged file is the same version: no label moved"
    assert other.history() == first
    assert other.current() == files
    assert other.load(production.version) == production
    assert other.latest_evaluation(USE_CASE) == {"use_case": USE_CASE, "passed": True, "score": 0.9}
    assert other.latest_evaluation("unknown") is None
    assert other.served(USE_CASE) == (production, None, 0.0)
    with pytest.raises(KeyError, match=r"prompt version 000000000000 is not in the registry"):
        other.load("000000000000")

    # A label moves: the candidate is promoted (its file copied over production.toml).
    moved = tmp_path / "prompts"
    (moved / USE_CASE).mkdir(parents=True)
    candidate = Path(source, USE_CASE, "candidate.toml").read_text(encoding="utf-8")
    (moved / USE_CASE / "production.toml").write_text(
        candidate.replace('label = "candidate"', 'label = "production"'), encoding="utf-8"
    )
    promoted = PromptRegistry(source_dir=str(moved), store_url=url).read_files()
    entries = other.record(promoted, DAY + datetime.timedelta(days=1))

    assert [(e["label"], e["previous"]) for e in entries] == [("production", production.version)]
    assert entries[0]["version"] == files[USE_CASE]["candidate"].version
    assert registry.history() == first + entries
    assert registry.current()[USE_CASE]["production"].version == entries[0]["version"]
