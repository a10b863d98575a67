"""Sensor tests of ``retraining_sensor``: its cursor cases, ticked against real reports.

Each test writes ``model_monitoring_report`` materializations (with the metadata the asset
writes: ``champion_version`` and ``verdicts``) onto a temporary Dagster instance, registers a
real MLflow champion, and evaluates the sensor tick by tick with a frozen clock, carrying the
cursor string from one tick to the next as the sensor daemon does: nothing new, reports below
the act level, an act verdict on the serving champion, a stale report about a replaced version,
the cooldown, and a daemon restart between ticks.
"""

import datetime
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetMaterialization,
    DagsterInstance,
    Definitions,
    MetadataValue,
    RunRequest,
    build_sensor_context,
    validate_run_config,
)
from support.harness import days
from support.servers import free_port

from platform_assets.common.keys import FRAUD_LABELS, MODEL_MONITORING_REPORT, TRAINING_SET
from platform_assets.definitions import build_definitions
from resources.alerting import Alerter, LocalAlerter, WebhookAlerter
from resources.clock import Clock
from resources.label_policy import LabelPolicy
from resources.model_registry import ModelRegistry
from resources.monitoring_policy import MonitoringPolicy
from sensors.monitoring import retraining_sensor

pytestmark = pytest.mark.sensor

DAY = "2026-03-05"
T0 = datetime.datetime(2026, 3, 6, 6, 0, tzinfo=datetime.UTC)
HOUR = datetime.timedelta(hours=1)
# Not the defaults (72 h, 28 days), so a default leaking past the policy would show.
# Retrain at once (min_days_after_change 0) unless a test says otherwise.
POLICY = MonitoringPolicy(
    retraining_cooldown_hours=48.0, retraining_window_days=21, min_days_after_change=0
)
LABELS = LabelPolicy(maturity_days=3)
NEWEST_MATURED = "2026-03-02"  # T0 less the 3-day maturity and the day itself
COOLDOWN = datetime.timedelta(hours=POLICY.retraining_cooldown_hours)
NO_NEW_REPORT = "No new model_monitoring_report since the last tick."
# The label feed's days ingested before each test: every report day the tests' ticks need.
LABELS_INGESTED = 90


def ingest_labels(instance: DagsterInstance, report_days: list[str]) -> None:
    """Mark days of the label feed ingested (the status the sensor reads)."""
    for day in report_days:
        instance.report_runless_asset_event(AssetMaterialization(FRAUD_LABELS, partition=day))


def verdict(
    check: str,
    level: str,
    value: float | None = 0.731,
    threshold: float | None = 0.5,
    metric: str | None = None,
) -> dict[str, Any]:
    """One verdict record as ``model_monitoring_report`` writes it in its ``verdicts`` metadata."""
    return {
        "check": check,
        "metric": metric or f"psi:{check}",
        "value": value,
        "threshold": threshold,
        "level": level,
        "reason": f"{value} vs {threshold} ({level})",
    }


def drift_act(day_value: float = 0.731) -> dict[str, Any]:
    """A feature-drift verdict past its act level."""
    return verdict("feature_drift", "act", day_value, 0.5, "psi:amount")


@dataclass(frozen=True)
class Tick:
    """What one evaluation returned: the run requests, the skip message and the new cursor."""

    requests: list[RunRequest]
    skip_message: str | None
    cursor: str | None

    def state(self) -> dict[str, Any]:
        """The cursor as the sensor keeps it: ``after`` (storage id) and ``requested_at``."""
        assert self.cursor is not None
        return json.loads(self.cursor)


@dataclass
class Rig:
    """A test instance, an MLflow registry with a champion, an alert file and the code location."""

    instance: DagsterInstance
    registry: ModelRegistry
    alerter: LocalAlerter
    defs: Definitions

    def report(self, *verdicts: dict[str, Any], day: str = DAY, version: str = "1") -> int:
        """Store a day's monitoring report judging ``version``; return its storage id."""
        self.instance.report_runless_asset_event(
            AssetMaterialization(
                asset_key=MODEL_MONITORING_REPORT,
                partition=day,
                metadata={
                    "champion_version": MetadataValue.text(version),
                    "verdicts": MetadataValue.json(list(verdicts)),
                },
            )
        )
        (latest,) = self.instance.fetch_materializations(MODEL_MONITORING_REPORT, limit=1).records
        return latest.storage_id

    def tick(
        self,
        at: datetime.datetime,
        cursor: str | None,
        policy: MonitoringPolicy = POLICY,
        alerter: Alerter | None = None,
    ) -> Tick:
        """One evaluation at ``at``, from a context built afresh (as the daemon builds each)."""
        context = build_sensor_context(
            instance=self.instance,
            cursor=cursor,
            resources={
                "clock": Clock(frozen_at=at.isoformat()),
                "model_registry": self.registry,
                "monitoring_policy": policy,
                "label_policy": LABELS,
                "alerter": alerter or self.alerter,
            },
            definitions=self.defs,
        )
        result = retraining_sensor.evaluate_tick(context)
        return Tick(list(result.run_requests or []), result.skip_message, result.cursor)

    def alerts(self) -> list[dict[str, Any]]:
        return self.alerter.read()


@pytest.fixture(scope="module")
def defs(tmp_path_factory: pytest.TempPathFactory) -> Definitions:
    """The real code location, so the sensor's asset selection resolves against its graph."""
    return build_definitions("local", data_dir=tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow store holding ``fraud_model`` versions 1 and 2, no alias yet.

    Creating the SQLite schema takes seconds; each test copies this file instead.
    """
    folder = tmp_path_factory.mktemp("mlflow")
    registry = ModelRegistry(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    client = registry.client()
    client.create_registered_model(registry.model_name)
    for _ in range(2):
        client.create_model_version(registry.model_name, source=str(folder), run_id=None)
    return folder / "mlflow.db"


@pytest.fixture
def rig(
    instance: DagsterInstance, defs: Definitions, mlflow_template: Path, tmp_path: Path
) -> Iterator[Rig]:
    shutil.copy(mlflow_template, tmp_path / "mlflow.db")
    registry = ModelRegistry(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifact_location=str(tmp_path / "artifacts"),
    )
    registry.promote("1")
    champion = registry.champion()
    assert champion is not None and str(champion.version) == "1"
    ingest_labels(instance, days("2026-01-01", LABELS_INGESTED))
    yield Rig(instance, registry, LocalAlerter(alerts_file=str(tmp_path / "alerts.jsonl")), defs)


def test_nothing_new_skips_and_a_consumed_report_is_not_read_again(rig: Rig):
    empty = rig.tick(T0, None)

    assert empty.requests == []
    assert empty.skip_message == NO_NEW_REPORT
    assert empty.cursor is None, "no report read, so no place to keep"

    rig.report(drift_act())
    first = rig.tick(T0, None)
    assert len(first.requests) == 1
    alerts = len(rig.alerts())

    again = rig.tick(T0 + COOLDOWN + HOUR, first.cursor)

    assert again.requests == [], "past the cooldown, but the report was already acted on"
    assert again.skip_message == NO_NEW_REPORT
    assert len(rig.alerts()) == alerts


def test_ok_and_warn_verdicts_request_nothing_but_move_the_cursor(rig: Rig):
    storage_id = rig.report(
        verdict("feature_drift", "warn", 0.2, 0.1),
        verdict("prediction_drift", "ok", 0.03, 0.1),
        verdict("realized_performance", "pending", None, None),
    )

    result = rig.tick(T0, None)

    assert result.requests == []
    assert result.skip_message == "1 new report(s), no act verdict"
    assert result.state() == {"after": storage_id, "requested_at": None, "pending": None}
    assert rig.alerts() == []

    # The cursor moved past that report only: the next one (an act) is read and acted on.
    rig.report(drift_act(), day="2026-03-06")
    after = rig.tick(T0 + HOUR, result.cursor)
    assert [r.tags["flywheel/day"] for r in after.requests] == ["2026-03-06"]


def test_act_verdict_on_the_champion_requests_one_training_set(rig: Rig):
    storage_id = rig.report(
        verdict("prediction_drift", "warn", 0.2, 0.1),
        verdict("estimated_performance", "act", 0.1234567, 0.21, "estimated_pr_auc"),
        verdict("realized_performance", "pending", None, None),
    )

    result = rig.tick(T0, None)

    (request,) = result.requests
    assert result.skip_message is None
    assert request.asset_selection == [TRAINING_SET]
    assert request.run_config == {
        "ops": {
            "training_set": {
                "config": {"last_day": NEWEST_MATURED, "days": POLICY.retraining_window_days}
            }
        }
    }
    assert request.run_key.startswith(f"retrain:estimated_performance:{DAY}:v1:")
    assert request.tags["dagster/sensor_name"] == "retraining_sensor"
    assert {k: v for k, v in request.tags.items() if k.startswith("flywheel/")} == {
        "flywheel/trigger": "monitoring",
        "flywheel/check": "estimated_performance",
        "flywheel/metric": "estimated_pr_auc",
        "flywheel/value": "0.123457",
        "flywheel/threshold": "0.21",
        "flywheel/day": DAY,
        "flywheel/champion_version": "1",
        "flywheel/window": f"21 days to {NEWEST_MATURED}",
    }
    assert result.state() == {"after": storage_id, "requested_at": T0.isoformat(), "pending": None}

    # The run config is one the real training_set job accepts.
    job = rig.defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={TRAINING_SET}
    )
    validate_run_config(job, request.run_config)

    (alert,) = rig.alerts()
    assert alert["severity"] == "warning"
    assert alert["title"] == f"retraining requested: estimated_performance on {DAY}"
    assert "champion v1" in alert["message"]
    assert alert["details"] == {"check": "estimated_performance", "partition": DAY}


def test_a_webhook_outage_does_not_stop_the_retraining_request(rig: Rig):
    rig.report(verdict("estimated_performance", "act", 0.1, 0.21, "estimated_pr_auc"))
    down = WebhookAlerter(webhook_url=f"http://127.0.0.1:{free_port()}/hook", timeout_seconds=1)

    result = rig.tick(T0, None, alerter=down)

    assert [r.asset_selection for r in result.requests] == [[TRAINING_SET]]


def test_no_second_retraining_while_the_first_is_still_queued(rig: Rig):
    """Past the cooldown, a new act verdict waits for the last retraining's run to finish."""
    rig.report(drift_act())
    requested = rig.tick(T0, None)
    (first,) = requested.requests
    job = rig.defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection=set(first.asset_selection or [])
    )
    queued = rig.instance.create_run_for_job(job, run_config=first.run_config, tags=first.tags)
    rig.report(drift_act(), day="2026-03-09")

    waiting = rig.tick(T0 + COOLDOWN + HOUR, requested.cursor)

    assert waiting.requests == []
    assert f"the last retraining's run {queued.run_id[:8]} is still not_started" in (
        waiting.skip_message or ""
    )


def test_a_due_retraining_waits_until_its_labels_are_ingested(rig: Rig):
    """The clock says the labels are due; the request waits for the feed's days to be in."""
    last_ingested = days("2026-01-01", LABELS_INGESTED)[-1]
    late = datetime.datetime.combine(
        datetime.date.fromisoformat(last_ingested) + datetime.timedelta(days=3),
        datetime.time(6),
        tzinfo=datetime.UTC,
    )
    rig.report(verdict("estimated_performance", "act", 0.1, 0.21, "estimated_pr_auc"))

    waiting = rig.tick(late, None)
    ingest_labels(rig.instance, days(last_ingested, 3)[1:])
    (request,) = rig.tick(late + HOUR, waiting.cursor).requests

    assert waiting.requests == []
    assert "waits for the labels reported on 2026-04-01, 2026-04-02 to be ingested" in (
        waiting.skip_message or ""
    )
    config = request.run_config["ops"]["training_set"]["config"]
    assert config["last_day"] == "2026-03-30"


def test_act_verdict_on_a_replaced_champion_is_stale(rig: Rig):
    rig.registry.promote("2")
    rig.report(drift_act(), version="1")

    result = rig.tick(T0, None)

    assert result.requests == []
    assert result.skip_message is not None
    assert "judged v1" in result.skip_message
    assert "v2 serves now" in result.skip_message
    assert f"feature_drift on {DAY}" in result.skip_message
    assert result.state()["requested_at"] is None, "a stale report starts no cooldown"
    assert rig.alerts() == []

    # The same breach judged on the new champion is acted on.
    rig.report(drift_act(), day="2026-03-06", version="2")
    fresh = rig.tick(T0 + HOUR, result.cursor)
    assert [r.run_key.rsplit(":", 1)[0] for r in fresh.requests] == [
        "retrain:feature_drift:2026-03-06:v2"
    ]


def test_cooldown_skips_with_an_info_alert_then_requests_again(rig: Rig):
    rig.report(drift_act(), day="2026-03-05")
    first = rig.tick(T0, None)
    assert len(first.requests) == 1

    rig.report(drift_act(0.8), day="2026-03-06")
    cooling = rig.tick(T0 + HOUR, first.cursor)

    assert cooling.requests == []
    assert cooling.skip_message is not None
    assert "cooldown" in cooling.skip_message
    assert "feature_drift on 2026-03-06" in cooling.skip_message
    assert cooling.state()["requested_at"] == T0.isoformat(), "a skip does not extend it"
    skipped = rig.alerts()[-1]
    assert skipped["severity"] == "info"
    assert skipped["title"] == "retraining skipped: feature_drift on 2026-03-06"
    assert T0.isoformat() in skipped["message"]

    rig.report(drift_act(0.9), day="2026-03-08")
    later = T0 + COOLDOWN + HOUR
    again = rig.tick(later, cooling.cursor)

    (request,) = again.requests
    assert request.run_key.startswith("retrain:feature_drift:2026-03-08:v1:")
    assert again.state()["requested_at"] == later.isoformat()
    assert [a["severity"] for a in rig.alerts()] == ["warning", "info", "warning"]


def test_cooldown_boundary_is_exclusive_of_the_full_period(rig: Rig):
    rig.report(drift_act(), day="2026-03-05")
    first = rig.tick(T0, None)

    rig.report(drift_act(), day="2026-03-06")
    just_before = rig.tick(T0 + COOLDOWN - datetime.timedelta(seconds=1), first.cursor)
    assert just_before.requests == []

    rig.report(drift_act(), day="2026-03-07")
    at_end = rig.tick(T0 + COOLDOWN, just_before.cursor)
    assert len(at_end.requests) == 1, "the cooldown is over once its hours have passed"


def test_two_act_verdicts_in_one_tick_request_once(rig: Rig):
    rig.report(
        drift_act(),
        verdict("prediction_drift", "act", 0.6, 0.5, "psi:score"),
        day="2026-03-04",
    )
    rig.report(verdict("champion_age", "act", 31, 30, "age_days"), day="2026-03-05")

    result = rig.tick(T0, None)

    (request,) = result.requests
    assert request.tags["flywheel/check"] == "feature_drift", "the first act verdict wins"
    assert request.tags["flywheel/day"] == "2026-03-04"
    assert result.skip_message is None
    assert sorted(a["severity"] for a in rig.alerts()) == ["info", "info", "warning"]


def test_daemon_restart_neither_repeats_nor_misses_a_request(rig: Rig):
    rig.report(drift_act(), day="2026-03-05")
    before = rig.tick(T0, None)
    (first,) = before.requests
    saved = before.cursor  # what the daemon stores with the tick
    assert isinstance(saved, str)

    # A restarted daemon: a new context (and new resources) from the stored cursor string.
    restarted = Rig(
        rig.instance,
        ModelRegistry(tracking_uri=rig.registry.tracking_uri),
        LocalAlerter(alerts_file=rig.alerter.alerts_file),
        rig.defs,
    )
    after_restart = restarted.tick(T0 + 10 * datetime.timedelta(minutes=1), saved)
    assert after_restart.requests == [], "not repeated"
    assert after_restart.skip_message == NO_NEW_REPORT
    assert after_restart.cursor == saved, "the cooldown's start is kept"

    rig.report(drift_act(0.9), day="2026-03-08")
    later = restarted.tick(T0 + COOLDOWN + HOUR, after_restart.cursor)
    (second,) = later.requests
    assert second.run_key.startswith("retrain:feature_drift:2026-03-08:v1:"), "not missed"
    assert second.run_key != first.run_key


def test_lost_cursor_repeats_the_same_run_key_for_the_same_report(rig: Rig):
    rig.report(drift_act(), day="2026-03-05")
    (first,) = rig.tick(T0, None).requests

    # Without its cursor the sensor re-reads the report and asks again, under the same run
    # key, so the daemon (which launches a run key once per sensor) does not run it twice.
    (repeated,) = rig.tick(T0 + HOUR, None).requests
    assert repeated.run_key == first.run_key
    assert first.run_key.startswith(f"retrain:feature_drift:{DAY}:v1:")
    assert repeated.run_config == first.run_config


def test_a_rerun_report_past_the_cooldown_gets_a_run_key_not_used_before(rig: Rig):
    rig.report(drift_act(), day=DAY)
    before = rig.tick(T0, None)
    (first,) = before.requests

    # monitoring_freshness_sensor re-runs the day's report once its labels are due; the drift
    # still acts and v1 still serves (say the retrained candidate failed its gate).
    rig.report(drift_act(), day=DAY)
    again = rig.tick(T0 + COOLDOWN + HOUR, before.cursor)

    (second,) = again.requests  # the sensor alerts "retraining requested", restarts the cooldown
    assert second.run_key != first.run_key, "the daemon skips a run key it has launched"


def test_a_drift_retrains_on_the_days_after_it_once_they_have_labels(rig: Rig):
    waiting = MonitoringPolicy(retraining_cooldown_hours=48.0, min_days_after_change=3)
    onset = "2026-02-28"  # three days up to NEWEST_MATURED at T0 + 1 day
    rig.report(drift_act(), day=onset)

    early = rig.tick(T0 - datetime.timedelta(days=1), None, waiting)
    assert early.requests == []
    assert "waits for labelled days after the change: 2 of 3" in (early.skip_message or "")
    assert early.state()["pending"]["day"] == onset

    # No new report: the pending trigger alone is due a day later, and only once.
    (request,) = rig.tick(T0, early.cursor, waiting).requests
    config = request.run_config["ops"]["training_set"]["config"]
    assert config == {"last_day": NEWEST_MATURED, "days": 3}
    again = rig.tick(T0 + HOUR, rig.tick(T0, early.cursor, waiting).cursor, waiting)
    assert again.requests == []
