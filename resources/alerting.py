"""Alerters: how a halted batch or a breached SLO reaches a person.

The default writes to the Dagster log and appends one JSON line per alert to a local file, so an
alert is both visible in the run and kept after it; the webhook alerter posts Slack-compatible
messages to a URL that comes from the environment, never from the repository.
"""

import datetime
import json
from pathlib import Path
from typing import Any, Literal

import requests
from dagster import ConfigurableResource, get_dagster_logger
from pydantic import Field

Severity = Literal["info", "warning", "error"]


class Alerter(ConfigurableResource):
    """Interface: ``send`` one alert. Implementations decide where it goes."""

    def send(
        self, title: str, message: str, severity: Severity = "error", **details: Any
    ) -> dict[str, Any]:
        """Deliver an alert and return the record that was sent.

        Args:
            title: One line saying what happened, e.g. ``raw_transactions 2026-03-02 halted``.
            message: What failed, by how much, and what a person can do about it.
            severity: ``info``, ``warning`` or ``error``.
            **details: JSON-serialisable context (asset, partition, check, figures).
        """
        record = {
            "sent_at": datetime.datetime.now(datetime.UTC).isoformat(),
            "severity": severity,
            "title": title,
            "message": message,
            "details": details,
        }
        log = get_dagster_logger()
        emit = {"info": log.info, "warning": log.warning, "error": log.error}[severity]
        emit(f"ALERT {title}: {message}")
        self._deliver(record)
        return record

    def try_send(
        self, title: str, message: str, severity: Severity = "error", **details: Any
    ) -> bool:
        """``send``, but a failed delivery is logged instead of raised; whether it was delivered.

        For sensors: an alert is about a run, and a webhook outage must not stop the run from
        being requested. The caller decides whether to try again on its next tick.
        """
        try:
            self.send(title, message, severity, **details)
        except Exception as error:  # any delivery failure: the alert is what is lost, not the run
            get_dagster_logger().error(
                f"alert not delivered ({type(error).__name__}: {error}): {title}"
            )
            return False
        return True

    def _deliver(self, record: dict[str, Any]) -> None:
        raise NotImplementedError


class LocalAlerter(Alerter):
    """Logs the alert and appends it as one JSON line to ``alerts_file``.

    Attributes:
        alerts_file: Path of the JSON-lines file alerts are appended to.
    """

    alerts_file: str = Field(description="JSON-lines file that every alert is appended to.")

    def _deliver(self, record: dict[str, Any]) -> None:
        path = Path(self.alerts_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as sink:
            sink.write(json.dumps(record, default=str) + "\n")

    def read(self) -> list[dict[str, Any]]:
        """Every alert recorded so far, oldest first."""
        path = Path(self.alerts_file)
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class WebhookAlerter(Alerter):
    """Posts ``{"text": ...}`` to a Slack-compatible incoming webhook.

    Attributes:
        webhook_url: Incoming-webhook URL; set it with ``EnvVar("FLYWHEEL_ALERT_WEBHOOK_URL")``.
        timeout_seconds: How long to wait for the webhook before the alert counts as failed.
    """

    webhook_url: str = Field(description="Slack-compatible incoming webhook URL (a secret).")
    timeout_seconds: float = 10.0

    def _deliver(self, record: dict[str, Any]) -> None:
        icon = {"info": ":information_source:", "warning": ":warning:", "error": ":rotating_light:"}
        text = f"{icon[record['severity']]} *{record['title']}*\n{record['message']}"
        response = requests.post(
            self.webhook_url,
            data=json.dumps({"text": text, "flywheel": record}, default=str),
            headers={"Content-Type": "application/json"},
            timeout=self.timeout_seconds,
        )
        response.raise_for_status()
