"""The pluggable embedders: the offline default, an OpenAI-compatible endpoint, a local model."""

from pathlib import Path

import numpy as np
import pytest

from resources.llm.embeddings import HashingEmbedder, OpenAIEmbedder, SentenceTransformerEmbedder
from serving.llm.loopback import LoopbackProvider

pytestmark = pytest.mark.unit
TEXTS = ["Who must approve refunds over 500 euros?", "How long is chargeback evidence retained?"]


def test_the_hashing_embedder_is_deterministic_unit_length_and_names_its_space():
    first, again = HashingEmbedder().embed(TEXTS), HashingEmbedder().embed(TEXTS)

    assert first.shape == (2, 1024) and first.dtype == np.float32
    assert np.array_equal(first, again)
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0)
    assert HashingEmbedder(dimensions=64).model_id != HashingEmbedder().model_id


def test_the_hashing_embedder_puts_inflections_close_and_other_topics_far():
    vectors = HashingEmbedder().embed(
        ["who approves refunds", "who approved a refund", "when is a whitelist entry expired"]
    )

    assert vectors[0] @ vectors[1] > 0.5 > vectors[0] @ vectors[2]


def test_the_openai_embedder_calls_the_endpoint_in_one_batch(tmp_path):
    with LoopbackProvider("embeddings") as endpoint:
        embedder = OpenAIEmbedder(base_url=endpoint.base_url, api_key="sk-test")
        vectors = embedder.embed(TEXTS)

    assert endpoint.requests() == 1
    assert vectors.shape[0] == 2 and np.allclose(np.linalg.norm(vectors, axis=1), 1.0)


def _tiny_local_model(folder: Path) -> Path:
    """A randomly initialised one-layer BERT saved as a sentence-transformers model: no download."""
    transformers = pytest.importorskip("transformers")
    sentence_transformers = pytest.importorskip("sentence_transformers")
    modules = pytest.importorskip("sentence_transformers.sentence_transformer.modules")
    words = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "refunds",
        "approve",
        "chargeback",
        "evidence",
        "retained",
    ]
    (folder / "vocab.txt").write_text("\n".join(words))
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    config = transformers.BertConfig(
        vocab_size=len(words),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    transformers.BertModel(config).save_pretrained(folder / "bert")
    tokenizer.save_pretrained(folder / "bert")
    transformer = modules.Transformer(str(folder / "bert"))
    pooling = modules.Pooling(transformer.get_embedding_dimension())
    sentence_transformers.SentenceTransformer(modules=[transformer, pooling]).save(
        str(folder / "model")
    )
    return folder / "model"


def test_the_optional_sentence_transformer_embedder_loads_a_local_model(tmp_path, monkeypatch):
    """Runs only where the `embeddings` extra is installed (`uv sync --extra embeddings`)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    embedder = SentenceTransformerEmbedder(model_path=str(_tiny_local_model(tmp_path)))

    vectors = embedder.embed(TEXTS)

    assert vectors.shape == (2, 16) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert embedder.model_id.endswith("/model")
