"""One scoring pass: route each payment, read its features once, score, decide, log.

Payments of one call are routed first (sticky by customer), their features read in one batch,
and each variant's payments scored in one booster call. A canary that fails to score does not
fail the request: its payments are answered by the champion and the failure is logged against
the canary, where ``canary_analysis`` counts it as an error.
"""

import datetime
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from resources.model_registry import CANARY, CHAMPION
from resources.prediction_log import ONLINE
from serving.model.deployment import Deployment, LoadedModel
from serving.model.features import OnlineFeatureReader, Payment
from serving.model.routing import in_canary


class NoModel(RuntimeError):
    """No champion is loaded yet: the service is not ready."""


@dataclass(frozen=True)
class ScoredPayment:
    """The answer for one payment."""

    request_id: str
    transaction_id: str
    score: float
    decline: bool
    threshold: float
    model_version: str
    variant: str
    defaults_for: list[str]


@dataclass(frozen=True)
class Scored:
    """A call's answers, its log rows, and each variant's scoring failures."""

    answers: list[ScoredPayment]
    log_rows: list[dict[str, Any]]
    failures: list[tuple[str, str, str]]  # variant, version, error


class Predictor:
    """Scores payments with the deployment in force when the call began."""

    def __init__(
        self,
        features: OnlineFeatureReader,
        deployment: Callable[[], Deployment],
        model_name: str,
    ):
        self.features = features
        self.deployment = deployment
        self.model_name = model_name

    def score(
        self,
        payments: Sequence[Payment],
        transaction_ids: Sequence[str],
        started: float,
    ) -> Scored:
        """Score ``payments``; ``started`` is the request's ``time.perf_counter()`` start."""
        deployment = self.deployment()
        if deployment.champion is None:
            raise NoModel("no champion model is loaded yet")
        columns, unknown = self.features.read(payments)
        # Each answer's latency: the shared feature read plus its own model's scoring.
        latency_ms = np.full(len(payments), (time.perf_counter() - started) * 1000)
        variants = [
            CANARY
            if deployment.canary
            and in_canary(p.customer_id, deployment.canary_share, deployment.canary.version)
            else CHAMPION
            for p in payments
        ]
        scores, models, failure = _score_variants(deployment, columns, variants, latency_ms)
        failed = [i for i, v in enumerate(variants) if v == CANARY] if failure else []
        for i in failed:  # answered by the champion
            variants[i] = CHAMPION
        answers = [
            ScoredPayment(
                request_id=uuid.uuid4().hex,
                transaction_id=transaction_ids[i],
                score=float(scores[i]),
                decline=bool(scores[i] >= models[i].threshold),
                threshold=models[i].threshold,
                model_version=models[i].version,
                variant=variants[i],
                defaults_for=unknown[i],
            )
            for i in range(len(payments))
        ]
        rows = [
            self._log_row(answer, payments[i], columns, models[i], i, float(latency_ms[i]))
            for i, answer in enumerate(answers)
        ]
        if failure and deployment.canary is not None:
            rows += [self._error_row(answers[i], payments[i], deployment.canary, failure[2])
                     for i in failed]  # fmt: skip
        for row in rows:
            row["release"] = deployment.release
        return Scored(answers, rows, [failure] if failure else [])

    def _log_row(
        self,
        answer: ScoredPayment,
        payment: Payment,
        columns: dict[str, list[Any]],
        model: LoadedModel,
        position: int,
        latency_ms: float,
    ) -> dict[str, Any]:
        row = self._row(answer, payment, model)
        row.update(
            score=answer.score,
            decision=answer.decline,
            latency_ms=latency_ms,
            error=None,
        )
        row.update({name: _number(columns[name][position]) for name in model.features})
        return row

    def _error_row(
        self, answer: ScoredPayment, payment: Payment, model: LoadedModel, error: str
    ) -> dict[str, Any]:
        row = self._row(answer, payment, model)
        row.update(
            request_id=f"{answer.request_id}-{CANARY}",
            variant=CANARY,
            score=None,
            decision=None,
            latency_ms=None,
            error=error[:500],
        )
        return row

    def _row(self, answer: ScoredPayment, payment: Payment, model: LoadedModel) -> dict[str, Any]:
        at = datetime.datetime.fromtimestamp(payment.transaction_epoch_s, datetime.UTC)
        return {
            "request_id": answer.request_id,
            "transaction_id": answer.transaction_id,
            "customer_id": payment.customer_id,
            "amount": payment.amount,
            "event_time": at,
            "day": at.date().isoformat(),
            "model_name": self.model_name,
            "model_version": model.version,
            "variant": answer.variant,
            "source": ONLINE,
            "threshold": model.threshold,
            "logged_at": datetime.datetime.now(datetime.UTC),
        }


def _score_variants(
    deployment: Deployment,
    columns: dict[str, list[Any]],
    variants: list[str],
    latency_ms: np.ndarray,
) -> tuple[np.ndarray, list[LoadedModel], tuple[str, str, str] | None]:
    """Each payment's score and model; a canary that fails leaves its payments to the champion.

    ``latency_ms`` gains each payment's own model time.
    """
    assert deployment.champion is not None
    scores = np.zeros(len(variants))
    models = [deployment.champion] * len(variants)
    failure = None
    canary_rows = [i for i, v in enumerate(variants) if v == CANARY]
    champion_rows = [i for i, v in enumerate(variants) if v == CHAMPION]
    if deployment.canary is not None and canary_rows:
        try:
            scores[canary_rows], took = _predict(deployment.canary, columns, canary_rows)
            latency_ms[canary_rows] += took
            for i in canary_rows:
                models[i] = deployment.canary
        except Exception as error:
            failure = (CANARY, deployment.canary.version, f"{error}")
            champion_rows = sorted(champion_rows + canary_rows)
    if champion_rows:
        scores[champion_rows], took = _predict(deployment.champion, columns, champion_rows)
        latency_ms[champion_rows] += took
    return scores, models, failure


def _predict(
    model: LoadedModel, columns: dict[str, list[Any]], rows: list[int]
) -> tuple[np.ndarray, float]:
    """The booster's fraud probabilities for the payments at ``rows``, and the milliseconds."""
    began = time.perf_counter()
    matrix = np.array(
        [[_number(columns[name][i]) for name in model.features] for i in rows],
        dtype=np.float32,
    )
    # One thread: a handful of rows costs less than waking a pool, and requests run in parallel.
    scores = model.booster.predict(matrix, num_threads=1)
    return scores, (time.perf_counter() - began) * 1000  # type: ignore[return-value]


def _number(value: Any) -> float:
    """A feature value as the model reads it: missing is NaN."""
    return np.nan if value is None else float(value)
