"""The RAG index: the fraud-operations policies, chunked and embedded into LanceDB.

Incremental: only new or edited documents are re-embedded. Its freshness SLO is the lag of the
index behind the corpus (``VectorIndex.max_lag_minutes``), judged by the ``index_lag`` check
after every refresh and on its own every five minutes; ``rag_index_freshness_sensor`` refreshes
the index as soon as the corpus changes, and again after a refresh that failed.
"""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AutomationCondition,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from platform_assets.common.catalog import LLM, catalog
from platform_assets.common.keys import RAG_INDEX
from resources.alerting import Alerter
from resources.clock import Clock
from resources.llm.embeddings import Embedder
from resources.llm.rag import CorpusFolder, VectorIndex, index_lag

INDEX_LAG_CHECK = "index_lag"
# The lag check also runs on its own, every five minutes (evaluated by automation_sensor): a
# refresh that never starts or keeps failing is still noticed within a third of the 15-min SLO.
INDEX_LAG_CRON = "*/5 * * * *"


@asset(kinds={"lancedb"}, code_version="1", **catalog(LLM))
def rag_index(
    context, corpus: CorpusFolder, vector_index: VectorIndex, embedder: Embedder, clock: Clock
) -> MaterializeResult:
    """Chunks and embeddings of the policy corpus that the gateway retrieves from.

    Its data version is a hash of the embedding model and every document's content, so it
    changes exactly when retrieval can return something different.
    """
    now = clock.now()
    documents = corpus.documents()
    if not documents:
        raise ValueError(f"CorpusFolder.root {corpus.root} holds no .md or .txt document")
    _, lag = index_lag(documents, vector_index.state(), now)
    result = vector_index.sync(documents, embedder, now)
    context.log.info(
        f"index {result.version}: +{len(result.added)} ~{len(result.updated)} "
        f"-{len(result.removed)} documents, {result.chunks_embedded} chunks embedded"
    )
    return MaterializeResult(
        data_version=DataVersion(result.version),
        metadata={
            "index_version": MetadataValue.text(result.version),
            "embedder": MetadataValue.text(embedder.model_id),
            "documents": MetadataValue.int(len(documents)),
            "chunks": MetadataValue.int(result.chunks_total),
            "chunks_embedded": MetadataValue.int(result.chunks_embedded),
            "added": MetadataValue.json(result.added),
            "updated": MetadataValue.json(result.updated),
            "removed": MetadataValue.json(result.removed),
            "unchanged_documents": MetadataValue.int(len(result.unchanged)),
            "lag_at_refresh_seconds": MetadataValue.float(round(lag, 1)),
            "uri": MetadataValue.path(vector_index.uri),
        },
    )


@asset_check(
    asset=RAG_INDEX,
    name=INDEX_LAG_CHECK,
    description="The index reflects the corpus, or the oldest change has waited less than the SLO.",
    automation_condition=AutomationCondition.cron_tick_passed(INDEX_LAG_CRON)
    & ~AutomationCondition.in_progress(),
)
def rag_index_lag(
    corpus: CorpusFolder, vector_index: VectorIndex, clock: Clock, alerter: Alerter
) -> AssetCheckResult:
    """Compare the corpus now with what the index holds."""
    stale, lag = index_lag(corpus.documents(), vector_index.state(), clock.now())
    slo = vector_index.max_lag_minutes * 60
    passed = lag <= slo
    description = (
        f"{len(stale)} document(s) not indexed yet, the oldest change {lag:.0f} s ago "
        f"(SLO {slo:.0f} s)."
        if stale
        else "The index reflects every corpus document."
    )
    if not passed:
        alerter.send(
            title="rag_index is behind its freshness SLO",
            message=description + " Check rag_index_freshness_sensor and the rag_index runs.",
            severity="warning",
            asset="rag_index",
            stale_documents=stale,
        )
    return AssetCheckResult(
        passed=passed,
        severity=AssetCheckSeverity.WARN,
        description=description,
        metadata={
            "stale_documents": MetadataValue.json(stale),
            "lag_seconds": MetadataValue.float(round(lag, 1)),
            "slo_seconds": MetadataValue.float(slo),
        },
    )
