"""Sensor and schedule tests: cursor cases against real materializations on a test instance."""

import datetime
import json

import pytest
from dagster import (
    DagsterInstance,
    RunRequest,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
)
from support.harness import LocalPlatform, scenario

from resources.alerting import LocalAlerter
from resources.clock import Clock
from resources.quality_policy import QualityPolicy
from sensors.ingestion import (
    daily_ingestion_schedule,
    overdue_days,
    raw_transactions_freshness_sensor,
)

pytestmark = pytest.mark.sensor

UTC = datetime.UTC


def evaluate(instance: DagsterInstance, alerter: LocalAlerter, now: str, cursor: str | None = None):
    context = build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            "clock": Clock(frozen_at=now),
            "quality_policy": QualityPolicy(),
            "alerter": alerter,
        },
    )
    return raw_transactions_freshness_sensor(context)


@pytest.fixture
def alerter(tmp_path) -> LocalAlerter:
    return LocalAlerter(alerts_file=str(tmp_path / "alerts.jsonl"))


def test_overdue_days_respect_the_delivery_deadline():
    at_two = datetime.datetime(2026, 3, 10, 2, tzinfo=UTC)
    at_four = datetime.datetime(2026, 3, 10, 4, tzinfo=UTC)

    assert overdue_days(at_two, 3.0)[-1] == "2026-03-08", "03-09 is not due before 03:00"
    assert overdue_days(at_four, 3.0)[-1] == "2026-03-09"
    assert len(overdue_days(at_four, 3.0)) == 7
    assert overdue_days(datetime.datetime(2026, 1, 1, 12, tzinfo=UTC), 3.0) == []


def test_nothing_due_skips_with_a_reason(instance, alerter):
    result = evaluate(instance, alerter, "2026-01-01T12:00:00+00:00")

    assert isinstance(result, SkipReason)
    assert alerter.read() == []


def test_missing_days_are_requested_and_alerted_once(instance, alerter):
    first = evaluate(instance, alerter, "2026-03-10T04:00:00+00:00")

    requested = [r.partition_key for r in first.run_requests]
    assert requested == [f"2026-03-0{d}" for d in range(3, 10)]
    assert all(r.tags["flywheel/trigger"] == "freshness" for r in first.run_requests)
    assert first.run_requests[0].run_key == "2026-03-03@2026-03-10T04"
    assert len(alerter.read()) == 7

    # An hour later, same gaps: new run keys (a retry), but no second alert.
    later = evaluate(instance, alerter, "2026-03-10T05:10:00+00:00", first.cursor)
    assert [r.run_key for r in later.run_requests][0] == "2026-03-03@2026-03-10T05"
    assert len(alerter.read()) == 7
    assert json.loads(later.cursor) == requested


def test_stored_days_are_not_requested_but_failed_ones_are(platform: LocalPlatform, alerter):
    platform.ingest("2026-03-08")
    failed = platform.ingest("2026-03-09", scenario("missing_partition", "2026-03-09"))
    assert not failed.success

    result = evaluate(platform.instance, alerter, "2026-03-10T04:00:00+00:00")

    requested = [r.partition_key for r in result.run_requests]
    assert "2026-03-08" not in requested
    assert "2026-03-09" in requested
    assert any("failed" in a["message"] for a in alerter.read() if "2026-03-09" in a["title"])


def test_everything_stored_skips(platform: LocalPlatform, alerter):
    for day in [f"2026-03-0{d}" for d in range(3, 10)]:
        assert platform.ingest(day).success

    result = evaluate(platform.instance, alerter, "2026-03-10T04:00:00+00:00")

    assert isinstance(result, SkipReason)
    assert "2026-03-09" in result.skip_message


def test_daily_schedule_asks_for_the_day_that_just_ended():
    context = build_schedule_context(
        scheduled_execution_time=datetime.datetime(2026, 3, 10, 1, tzinfo=UTC)
    )
    requests = list(daily_ingestion_schedule.evaluate_tick(context).run_requests or [])

    assert len(requests) == 1
    assert isinstance(requests[0], RunRequest)
    assert requests[0].partition_key == "2026-03-09"
