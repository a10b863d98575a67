"""Embedders: text to unit vectors, for the RAG index and the gateway's semantic cache.

Pluggable behind one interface:

- ``HashingEmbedder`` (default): signed feature hashing of words, word pairs and character
  trigrams. Deterministic, no model, no download, about 0.1 ms a sentence. It finds lexical
  paraphrases (reordered, inflected, reworded around the same terms), not synonyms.
- ``OpenAIEmbedder``: any OpenAI-compatible ``/v1/embeddings`` endpoint (production), through the
  official SDK; the key comes from the environment.
- ``SentenceTransformerEmbedder``: a local sentence-embedding model, the optional extra
  ``flywheel[embeddings]``; it loads a model from a path or cache that must already be there.
"""

import hashlib
from typing import Any

import numpy as np
from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

from resources.llm.text import content_terms, normalise, words


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms == 0, 1.0, norms)).astype(np.float32)


class Embedder(ConfigurableResource):
    """Interface: ``embed`` texts into L2-normalised float32 rows; ``model_id`` names the space.

    Vectors from two different ``model_id`` values are not comparable, so the index and the cache
    record it and rebuild (or miss) when it changes.
    """

    def embed(self, texts: list[str]) -> np.ndarray:
        """One unit-length row per text."""
        raise NotImplementedError

    @property
    def model_id(self) -> str:
        """A stable name of the embedding space (model and settings)."""
        raise NotImplementedError


class HashingEmbedder(Embedder):
    """Feature-hashing embedder: the offline default, needs nothing at run time.

    Attributes:
        dimensions: Length of the vectors; more means fewer hash collisions.
    """

    dimensions: int = Field(default=1024, description="Vector length (hash buckets).")

    @property
    def model_id(self) -> str:
        """Name and size: the features are fixed in code, so this names the space."""
        return f"hashing-v1-{self.dimensions}"

    def _features(self, text: str) -> dict[str, float]:
        terms = content_terms(text)
        features: dict[str, float] = {}
        for term in terms:
            features[f"w:{term}"] = features.get(f"w:{term}", 0.0) + 1.0
        for left, right in zip(terms, terms[1:], strict=False):
            features[f"b:{left} {right}"] = 0.5
        for word in words(normalise(text)):
            padded = f"<{word}>"
            for i in range(len(padded) - 2):
                gram = f"c:{padded[i : i + 3]}"
                features[gram] = features.get(gram, 0.0) + 0.25
        return features

    def embed(self, texts: list[str]) -> np.ndarray:
        """Hash every feature to a signed bucket and normalise."""
        matrix = np.zeros((len(texts), self.dimensions), dtype=np.float64)
        for row, text in enumerate(texts):
            for feature, weight in self._features(text).items():
                digest = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest())
                sign = 1.0 if digest & 1 else -1.0
                matrix[row, (digest >> 1) % self.dimensions] += sign * weight
        return _unit_rows(matrix)


class OpenAIEmbedder(Embedder):
    """Embeddings from an OpenAI-compatible endpoint (production).

    Attributes:
        base_url: API root (``…/v1``); set from ``FLYWHEEL_EMBEDDINGS_URL``.
        api_key: Secret; set with ``EnvVar("OPENAI_API_KEY")``.
        model: Embedding model name.
        timeout_seconds: Per request.
        max_retries: The SDK's retries of a failed request (the gateway degrades once they are
            spent, so fewer retries mean a faster degraded answer in an outage).
    """

    base_url: str = Field(description="OpenAI-compatible API root (…/v1).")
    api_key: str = Field(description="API key (a secret: use EnvVar).")
    model: str = Field(default="text-embedding-3-small", description="Embedding model.")
    timeout_seconds: float = 30.0
    max_retries: int = Field(default=2, ge=0, description="The SDK's retries of a request.")
    _client: Any = PrivateAttr(default=None)

    @property
    def model_id(self) -> str:
        """The remote model's name and where it is served."""
        return f"openai:{self.model}@{self.base_url}"

    def embed(self, texts: list[str]) -> np.ndarray:
        """One batched request; the SDK retries transient errors."""
        if self._client is None:
            import openai  # imported only when this embedder is used

            self._client = openai.OpenAI(
                base_url=self.base_url,
                api_key=self.api_key,
                timeout=self.timeout_seconds,
                max_retries=self.max_retries,
            )
        response = self._client.embeddings.create(input=texts, model=self.model)
        rows = [item.embedding for item in sorted(response.data, key=lambda item: item.index)]
        return _unit_rows(np.asarray(rows, dtype=np.float64))


class SentenceTransformerEmbedder(Embedder):
    """A local sentence-embedding model (optional extra: ``uv sync --extra embeddings``).

    Attributes:
        model_path: A model folder or name already in the local cache; nothing is downloaded
            (``HF_HUB_OFFLINE=1`` is the intended setting).
    """

    model_path: str = Field(description="Local sentence-transformers model folder.")
    _model: Any = PrivateAttr(default=None)

    @property
    def model_id(self) -> str:
        """The model folder names the space."""
        return f"sentence-transformers:{self.model_path}"

    def embed(self, texts: list[str]) -> np.ndarray:
        """Encode with the model, normalised."""
        if self._model is None:
            # The optional extra; not installed by default.
            from sentence_transformers import (  # pyright: ignore[reportMissingImports]
                SentenceTransformer,
            )

            self._model = SentenceTransformer(self.model_path, local_files_only=True)
        return _unit_rows(np.asarray(self._model.encode(texts), dtype=np.float64))
