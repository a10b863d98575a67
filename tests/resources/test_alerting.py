"""Behavioural tests for the alerters: the local JSON-lines file and the Slack-style webhook.

The webhook alerter is exercised against a real HTTP server on the loopback interface, so the
request that leaves the process is the one asserted on.
"""

import datetime
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from resources.alerting import LocalAlerter, WebhookAlerter

pytestmark = pytest.mark.unit


# --- LocalAlerter -------------------------------------------------------------------------------


def test_local_alerter_writes_one_json_line_per_alert(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "alerts.jsonl"
    alerter = LocalAlerter(alerts_file=str(path))
    before = datetime.datetime.now(datetime.UTC)

    first = alerter.send(
        "raw_transactions 2026-03-02 halted",
        "Too many bad rows.",
        asset="raw_transactions",
        partition="2026-03-02",
        bad_share=0.12,
    )
    alerter.send("raw_transactions 2026-03-03 is late", "Requesting again.", severity="warning")

    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    record = json.loads(lines[0])
    assert record == first
    assert record["title"] == "raw_transactions 2026-03-02 halted"
    assert record["message"] == "Too many bad rows."
    assert record["severity"] == "error"
    assert record["details"] == {
        "asset": "raw_transactions",
        "partition": "2026-03-02",
        "bad_share": 0.12,
    }
    sent_at = datetime.datetime.fromisoformat(record["sent_at"])
    assert sent_at.utcoffset() == datetime.timedelta(0)
    assert before <= sent_at <= datetime.datetime.now(datetime.UTC)
    assert json.loads(lines[1])["severity"] == "warning"
    assert json.loads(lines[1])["details"] == {}


def test_local_alerter_read_returns_alerts_oldest_first(tmp_path: Path) -> None:
    alerter = LocalAlerter(alerts_file=str(tmp_path / "alerts.jsonl"))
    assert alerter.read() == []

    for n in range(3):
        alerter.send(f"alert {n}", "m", severity="info", n=n)

    alerts = alerter.read()
    assert [a["title"] for a in alerts] == ["alert 0", "alert 1", "alert 2"]
    assert [a["details"]["n"] for a in alerts] == [0, 1, 2]
    # A second alerter on the same file sees the same history (appends, never overwrites).
    again = LocalAlerter(alerts_file=str(tmp_path / "alerts.jsonl"))
    again.send("alert 3", "m")
    assert [a["title"] for a in alerter.read()] == ["alert 0", "alert 1", "alert 2", "alert 3"]


def test_local_alerter_stringifies_details_that_json_cannot_encode(tmp_path: Path) -> None:
    alerter = LocalAlerter(alerts_file=str(tmp_path / "alerts.jsonl"))
    alerter.send("t", "m", day=datetime.date(2026, 3, 2))
    assert alerter.read()[0]["details"] == {"day": "2026-03-02"}


# --- WebhookAlerter -----------------------------------------------------------------------------


@dataclass
class _Webhook:
    url: str
    status: int = 200
    bodies: list[dict[str, Any]] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Webhook]:
    """A real HTTP server on 127.0.0.1 that records every POST body and answers ``status``."""
    # Loopback must never go through a proxy configured in the environment.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    state = _Webhook(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            state.bodies.append(json.loads(self.rfile.read(length)))
            state.content_types.append(self.headers.get("Content-Type", ""))
            self.send_response(state.status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/flywheel"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_webhook_alerter_posts_slack_compatible_text_and_the_record(webhook: _Webhook) -> None:
    alerter = WebhookAlerter(webhook_url=webhook.url, timeout_seconds=5)

    record = alerter.send(
        "raw_transactions 2026-03-02 halted",
        "Too many bad rows.",
        asset="raw_transactions",
        partition="2026-03-02",
    )

    assert len(webhook.bodies) == 1
    body = webhook.bodies[0]
    assert webhook.content_types[0].startswith("application/json")
    assert isinstance(body["text"], str)
    assert "raw_transactions 2026-03-02 halted" in body["text"]
    assert "Too many bad rows." in body["text"]
    assert body["text"].startswith(":rotating_light:")
    assert body["flywheel"] == record
    assert body["flywheel"]["details"] == {"asset": "raw_transactions", "partition": "2026-03-02"}


@pytest.mark.parametrize(
    ("severity", "icon"),
    [("info", ":information_source:"), ("warning", ":warning:"), ("error", ":rotating_light:")],
)
def test_webhook_alerter_marks_the_severity(webhook: _Webhook, severity: str, icon: str) -> None:
    WebhookAlerter(webhook_url=webhook.url).send("title", "message", severity=severity)  # type: ignore[arg-type]
    assert webhook.bodies[0]["text"].startswith(f"{icon} *title*")
    assert webhook.bodies[0]["flywheel"]["severity"] == severity


def test_webhook_alerter_raises_when_the_webhook_fails(webhook: _Webhook) -> None:
    webhook.status = 500

    with pytest.raises(requests.HTTPError, match="500"):
        WebhookAlerter(webhook_url=webhook.url).send("title", "message")

    assert len(webhook.bodies) == 1  # it was posted, and the failure was not swallowed
