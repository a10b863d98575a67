"""The RAG corpus and its vector index.

``CorpusFolder`` reads the policy documents (Markdown or text files in a folder). ``VectorIndex``
keeps their chunks and embeddings in LanceDB, an embedded, versioned vector store (one folder,
no server). Syncing is incremental: a document whose content hash is unchanged keeps its vectors;
only new or edited documents are chunked and embedded, and removed ones are deleted.

The index version is a content hash of (embedding space, every document's hash), so it changes
exactly when what retrieval can return changes; the semantic cache is scoped by it.
"""

import datetime
import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from resources.llm.embeddings import Embedder
from resources.llm.text import content_terms

_SUFFIXES = (".md", ".txt")
_TABLE = "chunks"
_STATE = "index_state.json"


class IndexNotBuilt(FileNotFoundError):
    """The index was never synced, so there is nothing to retrieve from."""


@dataclass(frozen=True)
class Document:
    """One corpus document as read now."""

    doc_id: str
    text: str
    sha256: str
    modified_at: datetime.datetime


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk with its similarity to the query."""

    doc_id: str
    chunk_id: str
    text: str
    score: float


@dataclass(frozen=True)
class SyncResult:
    """What one index sync changed."""

    version: str
    added: list[str]
    updated: list[str]
    removed: list[str]
    unchanged: list[str]
    chunks_embedded: int
    chunks_total: int


def corpus_version(model_id: str, doc_hashes: dict[str, str]) -> str:
    """Content hash of an index built with ``model_id`` over documents with these hashes."""
    body = json.dumps({"model": model_id, "docs": doc_hashes}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def index_lag(
    documents: dict[str, Document], state: dict[str, Any] | None, now: datetime.datetime
) -> tuple[list[str], float]:
    """Documents the index does not reflect, and how long the oldest such change has waited.

    The lag runs from the earliest modification of a new or edited document (a removed one
    counts from the last sync, the latest it can have happened before being noticed).
    """
    indexed = (state or {}).get("docs", {})
    changed = [d for d, doc in documents.items() if indexed.get(d) != doc.sha256]
    removed = [d for d in indexed if d not in documents]
    since = [documents[d].modified_at for d in changed]
    if removed and state:
        since.append(datetime.datetime.fromisoformat(state["synced_at"]))
    lag = max(0.0, (now - min(since)).total_seconds()) if since else 0.0
    return sorted(changed + removed), lag


class CorpusFolder(ConfigurableResource):
    """A folder of policy documents (``*.md``, ``*.txt``), one document a file.

    Attributes:
        root: The folder; document ids are paths relative to it.
    """

    root: str = Field(description="Folder holding the corpus documents.")

    def documents(self) -> dict[str, Document]:
        """Every document, keyed by its id; an error names the folder if it does not exist."""
        folder = Path(self.root)
        if not folder.is_dir():
            raise FileNotFoundError(f"corpus folder {folder} does not exist")
        docs = {}
        for path in sorted(folder.rglob("*")):
            if path.suffix not in _SUFFIXES or not path.is_file():
                continue
            text = path.read_text(encoding="utf-8")
            modified = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.UTC)
            doc_id = path.relative_to(folder).as_posix()
            digest = hashlib.sha256(text.encode()).hexdigest()
            docs[doc_id] = Document(doc_id, text, digest, modified)
        return docs


def chunk_document(doc: Document, max_chars: int) -> list[str]:
    """Split a document into passages of whole paragraphs, each prefixed with its title.

    The title travels with every chunk so a passage about "the threshold" still says which
    policy it belongs to.
    """
    lines = doc.text.strip().splitlines()
    title = lines[0].lstrip("# ").strip() if lines and lines[0].startswith("#") else doc.doc_id
    body = "\n".join(lines[1:] if lines and lines[0].startswith("#") else lines)
    paragraphs = [p.strip() for p in body.split("\n\n") if p.strip()]
    chunks: list[str] = []
    current = ""
    for paragraph in paragraphs:
        if current and len(current) + len(paragraph) > max_chars:
            chunks.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph
    if current:
        chunks.append(current)
    return [f"{title}\n\n{chunk}" for chunk in chunks] or [title]


class VectorIndex(ConfigurableResource):
    """Chunks and embeddings of the corpus in a LanceDB folder.

    Attributes:
        uri: LanceDB location (a local folder by default; object storage works the same way).
        chunk_chars: Target passage length in characters.
        max_lag_minutes: Freshness SLO: the longest a corpus change may wait to be indexed.
    """

    uri: str = Field(description="LanceDB folder (or object-store URI) of the index.")
    chunk_chars: int = Field(default=700, description="Target passage length in characters.")
    max_lag_minutes: float = Field(
        default=15.0, description="Freshness SLO: how far the index may lag behind the corpus."
    )

    def _db(self) -> Any:
        import lancedb  # imported on use: it is slow to import and `dagster dev` reloads often

        return lancedb.connect(self.uri)

    def _state_path(self) -> Path:
        return Path(self.uri) / _STATE

    def state(self) -> dict[str, Any] | None:
        """What the index holds: version, model, per-document hashes, when it was synced."""
        path = self._state_path()
        if not path.exists():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def sync(
        self, documents: dict[str, Document], embedder: Embedder, now: datetime.datetime
    ) -> SyncResult:
        """Bring the index in line with ``documents``, embedding only what changed.

        Every new chunk is embedded before a stale one is deleted, and the state (hence the
        version) is written last: a failed embedding leaves the previous index whole.
        """
        state = self.state() or {}
        indexed: dict[str, str] = state.get("docs", {})
        if state.get("model") != embedder.model_id:
            indexed = {}  # another embedding space: every vector must be recomputed
        added = sorted(d for d in documents if d not in indexed)
        updated = sorted(d for d in documents if d in indexed and indexed[d] != documents[d].sha256)
        removed = sorted(d for d in indexed if d not in documents)
        unchanged = sorted(d for d in documents if indexed.get(d) == documents[d].sha256)
        rows = []
        for doc_id in added + updated:
            doc = documents[doc_id]
            for n, text in enumerate(chunk_document(doc, self.chunk_chars)):
                rows.append({"doc_id": doc_id, "chunk_id": f"{doc_id}#{n}", "text": text})
        # Embed before touching the table: an embeddings outage then leaves the index exactly
        # as it was (old chunks, old version), never with edited documents missing.
        if rows:
            vectors = embedder.embed([r["text"] for r in rows])
            for row, vector in zip(rows, vectors, strict=True):
                row["vector"] = vector.tolist()
        db = self._db()
        table = db.open_table(_TABLE) if _TABLE in db.table_names() else None
        if table is not None and not indexed:
            db.drop_table(_TABLE)
            table = None
        stale = updated + removed
        if table is not None and stale:
            quoted = ", ".join("'" + d.replace("'", "''") + "'" for d in stale)
            table.delete(f"doc_id IN ({quoted})")
        if rows:
            if table is None:
                table = db.create_table(_TABLE, data=rows)
            else:
                table.add(rows)
        doc_hashes = {d: documents[d].sha256 for d in sorted(documents)}
        version = corpus_version(embedder.model_id, doc_hashes)
        new_state = {
            "version": version,
            "model": embedder.model_id,
            "docs": doc_hashes,
            "synced_at": now.isoformat(),
        }
        path = self._state_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".partial").write_text(json.dumps(new_state, indent=1), encoding="utf-8")
        path.with_suffix(".partial").replace(path)
        return SyncResult(
            version=version,
            added=added,
            updated=updated,
            removed=removed,
            unchanged=unchanged,
            chunks_embedded=len(rows),
            chunks_total=table.count_rows() if table is not None else 0,
        )

    def version(self) -> str | None:
        """The version of what the index holds now (None before the first sync)."""
        state = self.state()
        return state["version"] if state else None

    def open(self, embedder: Embedder) -> "IndexReader":
        """A reader for queries; it keeps the table open, as the gateway does between requests."""
        state = self.state()
        if state is None:
            raise IndexNotBuilt(
                f"the RAG index at {self.uri} has not been built yet: materialize rag_index "
                "(make dev does it by itself within a minute of starting)"
            )
        if state["model"] != embedder.model_id:
            raise ValueError(
                f"the RAG index was embedded with {state['model']}, not {embedder.model_id}; "
                "rematerialize rag_index"
            )
        return IndexReader(self._db().open_table(_TABLE), state["version"], embedder)


class IndexReader:
    """Nearest-passage search on one opened index version, and keyword search without vectors."""

    def __init__(self, table: Any, version: str, embedder: Embedder):
        self.table = table
        self.version = version
        self.embedder = embedder
        self._terms: list[tuple[dict[str, Any], frozenset[str]]] | None = None
        self._weights: dict[str, float] = {}

    def keyword_search(self, query: str, k: int) -> list[Passage]:
        """The ``k`` passages sharing the most query terms, rarer terms weighing more (idf).

        Retrieval when the embedder is down: it needs no vector. The chunks' text is read from
        the index once per reader (a policy corpus is small) and kept with its terms.
        """
        if self._terms is None:
            rows = self.table.search().select(["doc_id", "chunk_id", "text"]).limit(None)
            terms = [(row, frozenset(content_terms(row["text"]))) for row in rows.to_list()]
            counts = Counter(term for _, chunk in terms for term in chunk)
            self._weights = {t: math.log(1 + len(terms) / n) for t, n in counts.items()}
            self._terms = terms
        asked = set(content_terms(query))
        scored = [(sum(self._weights[t] for t in asked & chunk), row) for row, chunk in self._terms]
        best = sorted((s for s in scored if s[0] > 0), key=lambda s: (-s[0], s[1]["chunk_id"]))
        return [
            Passage(row["doc_id"], row["chunk_id"], row["text"], round(score, 6))
            for score, row in best[:k]
        ]

    def search(self, query: str, k: int, vector: Any = None) -> list[Passage]:
        """The ``k`` passages closest to ``query`` (cosine); pass ``vector`` if already embedded."""
        vector = self.embedder.embed([query])[0] if vector is None else vector
        nearest = self.table.search(vector.tolist()).metric("cosine").limit(k)
        # Leaving the vectors out of the result makes a query a third faster.
        hits = nearest.select(["doc_id", "chunk_id", "text", "_distance"]).to_list()
        return [
            Passage(h["doc_id"], h["chunk_id"], h["text"], round(1.0 - h["_distance"], 6))
            for h in hits
        ]
