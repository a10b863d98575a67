"""The prediction service: ``POST /predict`` scores a payment with the champion or the canary.

Features come from the Feast online store, models from the MLflow registry by alias (followed
without a restart), and every answer goes to the prediction log (source ``online``). Bad input
gets a 422 naming the field and the rule; a customer or merchant the store does not know is
scored on missing-value defaults and named in ``defaults_for``.

Run it (local, after a champion exists)::

    .venv/bin/python -m serving.model.app --port 8800
"""

import argparse
import datetime
import hmac
import os
import time
from typing import Any

from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from resources.alerting import Alerter
from resources.feature_store import FeatureStoreResource
from resources.model_registry import ModelRegistry
from resources.prediction_log import PredictionLog
from serving.model.deployment import DeploymentWatcher
from serving.model.features import FeaturesNotReady, OnlineFeatureReader, Payment
from serving.model.log_writer import PredictionLogWriter
from serving.model.metrics import ServiceMetrics
from serving.model.predictor import NoModel, Predictor, Scored

# Payments one /predict/batch call may carry.
MAX_BATCH = 1_000
ADMIN_TOKEN_VARIABLE = "FLYWHEEL_SERVING_ADMIN_TOKEN"
_INT64_MAX = 2**63 - 1
# Payments are scored as they happen: times outside these bounds are input errors.
_EARLIEST = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_LATEST = datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC)


class PaymentRequest(BaseModel):
    """One card payment to score."""

    model_config = ConfigDict(extra="forbid")

    transaction_id: str = Field(min_length=1, max_length=64, description="The payment's id.")
    customer_id: int = Field(ge=0, le=_INT64_MAX, description="The cardholder's id.")
    merchant_id: int = Field(ge=0, le=_INT64_MAX, description="The merchant's id.")
    amount: float = Field(gt=0, le=1_000_000, allow_inf_nan=False, description="EUR.")
    country: str | None = Field(
        default=None,
        pattern=r"^[A-Z]{2}$",
        description="Merchant country, ISO 3166 alpha-2; omitted where the dataset has none.",
    )
    timestamp: AwareDatetime | None = Field(
        default=None, description="When the payment happens; default: when it is received."
    )

    @field_validator("timestamp")
    @classmethod
    def _plausible(cls, value: datetime.datetime | None) -> datetime.datetime | None:
        if value is not None and not _EARLIEST <= value < _LATEST:
            raise ValueError("must be between 1970-01-01 and 2100-01-01 (UTC)")
        return value

    def payment(self) -> Payment:
        """The payment as the feature reader takes it."""
        at = self.timestamp.timestamp() if self.timestamp else time.time()
        return Payment(self.customer_id, self.merchant_id, self.amount, self.country, int(at))


class BatchRequest(BaseModel):
    """Up to ``MAX_BATCH`` payments scored in one call."""

    model_config = ConfigDict(extra="forbid")

    payments: list[PaymentRequest] = Field(min_length=1, max_length=MAX_BATCH)


class Prediction(BaseModel):
    """The answer for one payment."""

    request_id: str
    transaction_id: str
    score: float = Field(description="Probability of fraud.")
    decision: str = Field(description="'decline' at or above the threshold, else 'approve'.")
    threshold: float
    model_name: str
    model_version: str
    variant: str = Field(description="'champion' or 'canary'.")
    defaults_for: list[str] = Field(
        description="Entity keys not in the online store, scored on missing-value defaults."
    )


class Predictions(BaseModel):
    """The answers of a batch, in the order of its payments."""

    predictions: list[Prediction]


def create_app(
    predictor: Predictor,
    watcher: DeploymentWatcher,
    writer: PredictionLogWriter,
    admin_token: str | None,
) -> FastAPI:
    """The HTTP face of ``predictor``: predict, batch, health, metrics, admin."""
    app = FastAPI(title="Flywheel prediction service")
    metrics = ServiceMetrics(writer)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        """FastAPI's 422 (each error names the field and the rule), counted."""
        metrics.request(request.url.path, 422)
        return await request_validation_exception_handler(request, error)

    def answer(requests: list[PaymentRequest], endpoint: str) -> list[Prediction]:
        started = time.perf_counter()
        try:
            scored = predictor.score(
                [r.payment() for r in requests], [r.transaction_id for r in requests], started
            )
        except (NoModel, FeaturesNotReady) as error:
            metrics.request(endpoint, 503)
            raise HTTPException(503, str(error)) from error
        writer.submit(scored.log_rows)
        metrics.scored(endpoint, scored, time.perf_counter() - started)
        return _predictions(scored, predictor.model_name)

    @app.post("/predict")
    async def predict(payment: PaymentRequest) -> Prediction:
        return answer([payment], "/predict")[0]

    @app.post("/predict/batch")
    async def predict_batch(batch: BatchRequest) -> Predictions:
        return Predictions(predictions=answer(batch.payments, "/predict/batch"))

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        deployment = watcher.deployment
        body: dict[str, Any] = {
            "status": "ready" if deployment.champion else "not ready: no champion loaded",
            "model_name": predictor.model_name,
            "champion": deployment.champion and deployment.champion.version,
            "canary": deployment.canary and deployment.canary.version,
            "canary_share": deployment.canary_share,
            "load_errors": dict(watcher.load_errors),
            "prediction_log": {**writer.rows, "queued_requests": writer.pending()},
        }
        return JSONResponse(body, status_code=200 if deployment.champion else 503)

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.exposition(), media_type=metrics.content_type)

    _admin_routes(app, watcher, admin_token)
    return app


def _admin_routes(app: FastAPI, watcher: DeploymentWatcher, admin_token: str | None) -> None:
    """``/admin/reload`` and ``/admin/rollback``, behind the admin token."""

    def authorize(authorization: str | None) -> None:
        if not admin_token:
            raise HTTPException(403, f"admin actions are disabled: set {ADMIN_TOKEN_VARIABLE}")
        given = (authorization or "").removeprefix("Bearer ").encode()
        if not hmac.compare_digest(given, admin_token.encode()):
            raise HTTPException(401, "Authorization: a valid 'Bearer <admin token>' is needed")

    @app.post("/admin/reload")
    def reload(authorization: str | None = Header(default=None)) -> dict[str, Any]:
        authorize(authorization)
        deployment = watcher.refresh()
        return {"champion": deployment.champion and deployment.champion.version,
                "canary": deployment.canary and deployment.canary.version}  # fmt: skip

    @app.post("/admin/rollback")
    def rollback(authorization: str | None = Header(default=None)) -> dict[str, Any]:
        """End the canary release if one is under way, else return to the previous champion."""
        authorize(authorization)
        registry = watcher.registry
        if registry.canary() is not None:
            registry.end_canary()
            action = "canary release ended"
        else:
            try:
                action = f"champion rolled back to v{registry.rollback()}"
            except LookupError as error:
                raise HTTPException(409, str(error)) from error
        deployment = watcher.refresh()
        return {"action": action, "champion": deployment.champion and deployment.champion.version}


def _predictions(scored: Scored, model_name: str) -> list[Prediction]:
    return [
        Prediction(
            request_id=a.request_id,
            transaction_id=a.transaction_id,
            score=a.score,
            decision="decline" if a.decline else "approve",
            threshold=a.threshold,
            model_name=model_name,
            model_version=a.model_version,
            variant=a.variant,
            defaults_for=a.defaults_for,
        )
        for a in scored.answers
    ]


def build_service(
    registry: ModelRegistry,
    feature_store: FeatureStoreResource,
    prediction_log: PredictionLog,
    alerter: Alerter,
    poll_seconds: float = 5.0,
) -> tuple[FastAPI, DeploymentWatcher, PredictionLogWriter]:
    """The service on these resources, its watcher and log writer started."""
    watcher = DeploymentWatcher(registry, alerter, poll_seconds)
    watcher.start()
    writer = PredictionLogWriter(prediction_log)
    writer.start()
    predictor = Predictor(
        OnlineFeatureReader(feature_store), lambda: watcher.deployment, registry.model_name
    )
    app = create_app(predictor, watcher, writer, os.environ.get(ADMIN_TOKEN_VARIABLE))
    return app, watcher, writer


def main() -> None:
    """Serve the fraud model for ``$FLYWHEEL_ENV`` (uvicorn, loopback by default)."""
    import uvicorn
    from dagster import build_resources as initialize

    from resources.environments import build_resources, current_environment

    parser = argparse.ArgumentParser(description="Flywheel prediction service")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8800)
    parser.add_argument("--poll-seconds", type=float, default=5.0, help="alias check interval")
    args = parser.parse_args()
    wanted = ("model_registry", "feature_store", "prediction_log", "alerter")
    definitions = {key: build_resources(current_environment())[key] for key in wanted}
    with initialize(definitions) as resources:
        app, watcher, writer = build_service(
            resources.model_registry,
            resources.feature_store,
            resources.prediction_log,
            resources.alerter,
            args.poll_seconds,
        )
        try:
            uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
        finally:
            watcher.stop()
            writer.close()


if __name__ == "__main__":
    main()
