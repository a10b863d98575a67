"""Automation for the LLM pipeline: fresh index, registered prompts, evaluation on every change.

- ``rag_index_freshness_sensor`` compares the corpus with what the index holds and requests
  ``rag_index`` as soon as they differ (well inside the freshness SLO), and again whenever the
  run it requested failed, so the cursor only moves past a corpus version once it is indexed;
- ``prompt_change_sensor`` requests ``prompt_registry`` when a prompt file's content changes.

The rest (``llm_eval_report`` after a new prompt or index version, ``prompt_release`` after a
passing evaluation, the cost and A/B reports hourly) is declarative automation on the assets,
evaluated by ``sensors.automation.automation_sensor``.
"""

import hashlib

from dagster import (
    AssetKey,
    AssetSelection,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from platform_assets.common.keys import PROMPT_REGISTRY, RAG_INDEX
from resources.clock import Clock
from resources.llm.embeddings import Embedder
from resources.llm.prompts import PromptRegistry, PromptVersion
from resources.llm.rag import CorpusFolder, VectorIndex, corpus_version, index_lag


def _refresh_sensor(key: AssetKey, description: str):
    """A running-by-default sensor that requests ``key``, polling every 30 s."""
    return sensor(
        asset_selection=AssetSelection.assets(key),
        minimum_interval_seconds=30,
        default_status=DefaultSensorStatus.RUNNING,
        description=description,
    )


REQUEST_TAG = "flywheel/refresh_request"
VERSION_TAG = "flywheel/corpus_version"
_RETRIED = (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)


def _last_request(cursor: str | None) -> tuple[str | None, int]:
    """The corpus version and number of the last request (``rag_index@<version>#<n>``).

    A cursor written before requests were numbered holds the bare version.
    """
    if not cursor:
        return None, 0
    if "@" not in cursor:
        return cursor, 0
    version, _, n = cursor.removeprefix("rag_index@").partition("#")
    return version, int(n or 0)


@_refresh_sensor(
    RAG_INDEX,
    "Refreshes rag_index when a corpus document is added, edited or removed, and again after a "
    "refresh that failed.",
)
def rag_index_freshness_sensor(
    context: SensorEvaluationContext,
    corpus: CorpusFolder,
    vector_index: VectorIndex,
    embedder: Embedder,
    clock: Clock,
) -> RunRequest | SkipReason:
    """Request a refresh for each corpus version the index does not hold yet, until one succeeds.

    The cursor is the last request's run key (``rag_index@<corpus version>#<n>``). Once the
    version is requested, the sensor waits for that run; if it failed or was canceled, it
    requests the version again under a new run key (the daemon drops a used one). It skips only
    while the requested run is queued or running, or once the index holds the version.
    """
    documents = corpus.documents()
    wanted = corpus_version(embedder.model_id, {d: documents[d].sha256 for d in sorted(documents)})
    if wanted == vector_index.version():
        return SkipReason(f"The index holds corpus version {wanted}.")
    requested, n = _last_request(context.cursor)
    trigger = "corpus_changed"
    retry_of = ""
    if requested == wanted:
        runs = context.instance.get_runs(
            filters=RunsFilter(tags={REQUEST_TAG: context.cursor or ""}), limit=1
        )
        if not runs or runs[0].status not in _RETRIED:
            state = runs[0].status.value if runs else "not launched yet"
            return SkipReason(
                f"A refresh to corpus version {wanted} was requested ({context.cursor}): {state}."
            )
        trigger, retry_of = "refresh_failed", runs[0].run_id
    stale, lag = index_lag(documents, vector_index.state(), clock.now())
    run_key = f"rag_index@{wanted}#{n + 1}"
    context.update_cursor(run_key)
    return RunRequest(
        run_key=run_key,
        asset_selection=[RAG_INDEX],
        tags={
            "flywheel/trigger": trigger,
            REQUEST_TAG: run_key,
            VERSION_TAG: wanted,
            **({"flywheel/retry_of": retry_of} if retry_of else {}),
            "flywheel/stale_documents": ",".join(stale)[:200],
            "flywheel/lag_seconds": f"{lag:.0f}",
        },
    )


def _versions(prompts: dict[str, dict[str, PromptVersion]]) -> dict[tuple[str, str], str]:
    """Each (use case, label)'s prompt version."""
    return {(u, label): p.version for u, labels in prompts.items() for label, p in labels.items()}


@_refresh_sensor(
    PROMPT_REGISTRY,
    "Records a new prompt version in prompt_registry when a prompt file changes.",
)
def prompt_change_sensor(
    context: SensorEvaluationContext, prompts: PromptRegistry
) -> RunRequest | SkipReason:
    """Request ``prompt_registry`` when the set of versions in the files differs from the last."""
    recorded = _versions(prompts.current())
    now = _versions(prompts.read_files())
    if now == recorded:
        return SkipReason(f"The registry holds the {len(now)} prompt version(s) in the files.")
    fingerprint = hashlib.sha256(repr(sorted(now.items())).encode()).hexdigest()[:16]
    if fingerprint == context.cursor:
        return SkipReason("A registry update for these prompt files was already requested.")
    context.update_cursor(fingerprint)
    changed = sorted(
        f"{u}/{label}" for (u, label), v in now.items() if recorded.get((u, label)) != v
    )
    return RunRequest(
        run_key=f"prompt_registry@{fingerprint}",
        asset_selection=[PROMPT_REGISTRY],
        tags={"flywheel/trigger": "prompt_changed", "flywheel/prompts": ",".join(changed)[:200]},
    )
