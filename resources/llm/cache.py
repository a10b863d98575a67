"""The gateway's semantic cache: answers reused for questions that mean the same.

A hit needs all of:

- the same scope: use case, prompt version and index version (a new prompt or a refreshed
  index never serves an answer made before it);
- cosine similarity of the question embeddings at or above the threshold, which is calibrated
  on a labelled paraphrase set (``calibrate_threshold``) so that no non-paraphrase there hits;
- the same negations and the same numbers: "refunds over 500" is not "refunds over 5000", and
  "can a refund not go to another card" is not its positive, however close their vectors are;
- an entry younger than the TTL.
"""

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from resources.llm.embeddings import Embedder
from resources.llm.text import negation_cues, numbers

Scope = tuple[str, str, str]


@dataclass(frozen=True)
class CacheEntry:
    """One cached answer and what it cost to make."""

    question: str
    guards: tuple[frozenset[str], frozenset[str]]
    payload: dict[str, Any]
    cost_usd: float
    created: float


def guards(question: str) -> tuple[frozenset[str], frozenset[str]]:
    """What two questions must share, beyond similar vectors, to be the same question."""
    return negation_cues(question), numbers(question)


class SemanticCache:
    """In-process semantic cache, scoped per use case, prompt version and index version.

    A ``threshold`` of None (not calibrated yet: the embedder was down when the gateway started)
    makes every lookup miss until the gateway sets it.
    """

    def __init__(
        self,
        threshold: float | None,
        ttl_seconds: float,
        now: Callable[[], float] = time.monotonic,
        max_entries_per_scope: int = 10_000,
        max_scopes_per_use_case: int = 4,
    ):
        self.threshold = threshold
        self.ttl_seconds = ttl_seconds
        self.now = now
        self.max_entries_per_scope = max_entries_per_scope
        self.max_scopes_per_use_case = max_scopes_per_use_case
        self._entries: dict[Scope, list[CacheEntry]] = {}
        self._vectors: dict[Scope, np.ndarray] = {}
        self._lock = threading.Lock()

    def lookup(
        self, scope: Scope, question: str, vector: np.ndarray
    ) -> tuple[CacheEntry, float] | None:
        """The best live entry in ``scope`` that passes every rule, with its similarity.

        Entries and their vectors are read under the lock together: a store evicting the oldest
        entry shifts both, so a position taken from one must index the other at the same moment.
        """
        threshold = self.threshold
        if threshold is None:  # not calibrated yet: nothing is the same question
            return None
        wanted = guards(question)
        oldest = self.now() - self.ttl_seconds
        with self._lock:
            entries = self._entries.get(scope)
            if not entries:
                return None
            similarities = self._vectors[scope] @ vector
            for position in np.argsort(-similarities):
                similarity = float(similarities[position])
                if similarity < threshold:
                    return None
                entry = entries[position]
                if entry.created >= oldest and entry.guards == wanted:
                    return entry, similarity
        return None

    def store(
        self,
        scope: Scope,
        question: str,
        vector: np.ndarray,
        payload: dict[str, Any],
        cost_usd: float,
    ) -> None:
        """Keep an answer, and drop scopes that can no longer be asked for.

        A use case's scopes on an older index are dropped at once. Several prompt versions of a
        use case are live together (production and candidate in an A/B test), so those are
        kept, up to ``max_scopes_per_use_case``, the least recently filled going first.
        """
        entry = CacheEntry(question, guards(question), payload, cost_usd, self.now())
        with self._lock:
            siblings = [s for s in self._entries if s[0] == scope[0] and s != scope]
            stale = [s for s in siblings if s[2] != scope[2]]
            live = [s for s in siblings if s[2] == scope[2]]
            stale += live[: max(0, len(live) + 1 - self.max_scopes_per_use_case)]
            for other in stale:
                del self._entries[other], self._vectors[other]
            entries = self._entries.pop(scope, [])
            self._entries[scope] = entries  # re-inserted: dict order is the fill order
            rows = self._vectors.get(scope, np.zeros((0, vector.shape[0]), dtype=np.float32))
            if len(entries) >= self.max_entries_per_scope:
                entries.pop(0)
                rows = rows[1:]
            entries.append(entry)
            self._vectors[scope] = np.vstack([rows, vector[None, :].astype(np.float32)])

    def size(self) -> int:
        """Entries held, over every scope."""
        with self._lock:
            return sum(len(entries) for entries in self._entries.values())


@dataclass(frozen=True)
class Calibration:
    """The threshold chosen on a paraphrase set, and how it does there."""

    threshold: float
    paraphrase_hit_rate: float
    false_hits: int
    pairs: int


def load_pairs(path: str | Path) -> list[dict[str, Any]]:
    """A paraphrase set: JSON lines of ``{"a": ..., "b": ..., "same": bool}``."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def calibrate_threshold(
    embedder: Embedder, pairs: list[dict[str, Any]], margin: float = 0.01
) -> Calibration:
    """The lowest threshold at which no labelled non-paraphrase would hit (guards applied).

    A wrong cached answer costs more than a missed hit, so the threshold sits just above the
    most similar non-paraphrase that the guards let through, and the hit rate on true
    paraphrases is reported for what it is.
    """
    if not any(p["same"] for p in pairs) or not any(not p["same"] for p in pairs):
        raise ValueError("the paraphrase set needs both paraphrases and non-paraphrases")
    vectors = embedder.embed([text for p in pairs for text in (p["a"], p["b"])])
    similarity = [float(vectors[2 * i] @ vectors[2 * i + 1]) for i in range(len(pairs))]
    passes = [guards(p["a"]) == guards(p["b"]) for p in pairs]
    negatives = [
        s for s, p, ok in zip(similarity, pairs, passes, strict=True) if ok and not p["same"]
    ]
    positives = [s for s, p, ok in zip(similarity, pairs, passes, strict=True) if ok and p["same"]]
    threshold = round(max(negatives) + margin, 4) if negatives else round(min(positives), 4)
    hits = [s >= threshold for s in positives]
    false_hits = sum(s >= threshold for s in negatives)
    return Calibration(threshold, sum(hits) / max(1, len(positives)), false_hits, len(pairs))
