"""The service's Prometheus metrics: requests, predictions, errors and latency per variant.

Each service owns its registry (tests run several in one process). Prediction-log rows that could
not be written are exported from the writer's own counts at scrape time.
"""

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from serving.model.log_writer import PredictionLogWriter
from serving.model.predictor import Scored

# Seconds; the service answers in about a millisecond, a slow canary in tens.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class _LogCollector(Collector):
    def __init__(self, writer: PredictionLogWriter):
        self.writer = writer

    def collect(self):
        rows = CounterMetricFamily(
            "flywheel_prediction_log_rows",
            "Prediction-log rows by outcome: written, dropped (queue full), failed (write error).",
            labels=["outcome"],
        )
        for outcome, count in self.writer.rows.items():
            rows.add_metric([outcome], count)
        yield rows
        yield GaugeMetricFamily(
            "flywheel_prediction_log_queued_requests",
            "Requests whose log rows wait to be written.",
            value=self.writer.pending(),
        )


class ServiceMetrics:
    """Counters and histograms of one prediction service."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, writer: PredictionLogWriter):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "flywheel_http_requests",
            "HTTP requests by endpoint and status.",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.predictions = Counter(
            "flywheel_predictions",
            "Payments scored, by variant and model version.",
            ["variant", "model_version"],
            registry=self.registry,
        )
        self.errors = Counter(
            "flywheel_prediction_errors",
            "Payments a variant failed to score (answered by the champion), by version.",
            ["variant", "model_version"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "flywheel_request_latency_seconds",
            "Time to answer a request, by endpoint.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.model_latency = Histogram(
            "flywheel_prediction_latency_seconds",
            "Time to answer one payment (features plus its model), by variant and version.",
            ["variant", "model_version"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_LogCollector(writer))

    def request(self, endpoint: str, status: int) -> None:
        """Count a request that ended with ``status``."""
        self.requests.labels(endpoint, str(status)).inc()

    def scored(self, endpoint: str, scored: Scored, seconds: float) -> None:
        """Count a successful request and its payments."""
        self.request(endpoint, 200)
        self.latency.labels(endpoint).observe(seconds)
        for row in scored.log_rows:
            labels = (row["variant"], row["model_version"])
            if row["error"] is None:
                self.predictions.labels(*labels).inc()
                self.model_latency.labels(*labels).observe(row["latency_ms"] / 1000)
            else:
                self.errors.labels(*labels).inc()

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)
