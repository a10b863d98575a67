"""Sensor tests: the ingestion and freshness sensors against real instance state.

Days are marked stored either by a real ingestion (``LocalPlatform.ingest``) or, where only the
instance's partition status matters, by a runless materialization event, which updates the same
status the sensors read.
"""

import datetime
import json

import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    RunRequest,
    SensorResult,
    SkipReason,
    build_sensor_context,
)
from support.harness import LocalPlatform, days, scenario
from support.servers import free_port

from platform_assets.common.keys import (
    PRODUCTION_MODEL,
    RAW_TRANSACTIONS,
    TRAINING_SET,
    TRANSACTION_BASELINE,
    VALIDATED_TRANSACTIONS,
)
from platform_assets.definitions import defs
from resources.alerting import Alerter, LocalAlerter, WebhookAlerter
from resources.clock import Clock
from resources.label_policy import LabelPolicy
from resources.quality_policy import QualityPolicy
from sensors.ingestion import ingestion_sensor, overdue_days, raw_transactions_freshness_sensor

pytestmark = pytest.mark.sensor

UTC = datetime.UTC
# With one maturity day the history window is 30 + 14 + 1 + 1 = 46 days before today: at NOW,
# 2026-02-02 .. 2026-03-19 (the day that ended four hours ago has landed).
NOW = "2026-03-20T04:00:00+00:00"
POLICY = LabelPolicy(maturity_days=1)
WINDOW = days("2026-02-02", 46)


# History queues behind every other run.
HISTORY_TAGS = {"flywheel/trigger": "history", "dagster/priority": "-1"}


def evaluate(
    instance: DagsterInstance, alerter: Alerter, now: str, cursor: str | None = None
) -> SensorResult:
    context = build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            "clock": Clock(frozen_at=now),
            "quality_policy": QualityPolicy(),
            "alerter": alerter,
        },
    )
    result = raw_transactions_freshness_sensor(context)
    assert isinstance(result, SensorResult), result  # it keeps its cursor on every tick
    return result


def watching_since(instant: str) -> str:
    """A freshness cursor of a sensor that has been watching since ``instant``."""
    return json.dumps({"since": instant})


def ingest_tick(instance: DagsterInstance, now: str = NOW) -> SensorResult | SkipReason:
    context = build_sensor_context(
        instance=instance,
        definitions=defs,
        resources={"clock": Clock(frozen_at=now), "label_policy": POLICY},
    )
    result = ingestion_sensor(context)
    assert isinstance(result, SensorResult | SkipReason), result
    return result


def requests(result: SensorResult | SkipReason) -> list[RunRequest]:
    assert isinstance(result, SensorResult) and result.run_requests, result
    return list(result.run_requests)


def requested(result: SensorResult | SkipReason) -> list[str]:
    return [str(r.partition_key) for r in requests(result)]


def skip_message(result: SensorResult | SkipReason) -> str:
    """The skip message of a sensor that skipped, whichever way it returned it."""
    if isinstance(result, SensorResult):
        assert not result.run_requests, [r.partition_key for r in result.run_requests or []]
        assert result.skip_reason is not None
        return result.skip_reason.skip_message or ""
    assert isinstance(result, SkipReason), result
    return result.skip_message or ""


def store(instance: DagsterInstance, asset: AssetKey, *partitions: str) -> None:
    """Record materializations of ``asset`` (one per partition, or one when unpartitioned)."""
    for partition in partitions or [None]:
        instance.report_runless_asset_event(AssetMaterialization(asset, partition=partition))


@pytest.fixture
def alerter(tmp_path) -> LocalAlerter:
    return LocalAlerter(alerts_file=str(tmp_path / "alerts.jsonl"))


# raw_transactions_freshness_sensor


def test_overdue_days_respect_the_delivery_deadline():
    at_two = datetime.datetime(2026, 3, 10, 2, tzinfo=UTC)
    at_four = datetime.datetime(2026, 3, 10, 4, tzinfo=UTC)

    assert overdue_days(at_two, 3.0)[-1] == "2026-03-08", "03-09 is not due before 03:00"
    assert overdue_days(at_four, 3.0)[-1] == "2026-03-09"
    assert len(overdue_days(at_four, 3.0)) == 7
    assert overdue_days(datetime.datetime(2026, 1, 1, 12, tzinfo=UTC), 3.0) == []


def test_overdue_days_since_leave_out_deadlines_that_passed_before_it():
    at_four = datetime.datetime(2026, 3, 10, 4, tzinfo=UTC)

    # 03-07 was due at 03-08 03:00, before the platform watched; 03-08 and 03-09 after.
    since = datetime.datetime(2026, 3, 8, 12, tzinfo=UTC)
    assert overdue_days(at_four, 3.0, since) == ["2026-03-08", "2026-03-09"]
    # A deadline exactly at `since` had already passed when watching began.
    at_deadline = datetime.datetime(2026, 3, 9, 3, tzinfo=UTC)
    assert overdue_days(at_four, 3.0, at_deadline) == ["2026-03-09"]
    assert overdue_days(at_four, 3.0, at_four) == []


def test_first_tick_records_since_and_neither_requests_nor_alerts(instance, alerter):
    """Every recent day is missing, but they were due before the platform watched: history."""
    result = evaluate(instance, alerter, "2026-03-10T04:00:00+00:00")

    assert skip_message(result)
    assert alerter.read() == []
    assert json.loads(result.cursor or "") == {"since": "2026-03-10T04:00:00+00:00"}

    # The next tick keeps watching since then: a day due after it is late.
    later = evaluate(instance, alerter, "2026-03-11T04:00:00+00:00", result.cursor)
    assert requested(later) == ["2026-03-10"]
    assert json.loads(later.cursor or "")["since"] == "2026-03-10T04:00:00+00:00"


def test_nothing_due_skips_with_a_reason(instance, alerter):
    cursor = watching_since("2026-01-01T00:00:00+00:00")
    result = evaluate(instance, alerter, "2026-01-01T12:00:00+00:00", cursor)

    assert "2026-01-01T00:00:00+00:00" in skip_message(result)
    assert json.loads(result.cursor or "") == json.loads(cursor)
    assert alerter.read() == []


def test_missing_days_are_requested_and_alerted_once(instance, alerter):
    since = "2026-03-01T00:00:00+00:00"
    first = evaluate(instance, alerter, "2026-03-10T04:00:00+00:00", watching_since(since))

    keys = requested(first)
    assert keys == [f"2026-03-0{d}" for d in range(3, 10)]
    assert all(r.tags["flywheel/trigger"] == "freshness" for r in requests(first))
    assert requests(first)[0].run_key == "2026-03-03@2026-03-10T04"
    assert len(alerter.read()) == 7

    # An hour later, same gaps: new run keys (a retry), but no second alert.
    later = evaluate(instance, alerter, "2026-03-10T05:10:00+00:00", first.cursor)
    assert [r.run_key for r in requests(later)][0] == "2026-03-03@2026-03-10T05"
    assert len(alerter.read()) == 7
    assert json.loads(later.cursor or "") == {"since": since, "alerted": keys}


def test_a_webhook_outage_neither_stops_the_requests_nor_loses_the_alert(instance, alerter):
    """The late days are requested while the webhook is down, and alerted once it is back."""
    since = watching_since("2026-03-01T00:00:00+00:00")
    down = WebhookAlerter(webhook_url=f"http://127.0.0.1:{free_port()}/hook", timeout_seconds=1)

    during = evaluate(instance, down, "2026-03-10T04:00:00+00:00", since)
    after = evaluate(instance, alerter, "2026-03-10T05:10:00+00:00", during.cursor)

    assert requested(during) == [f"2026-03-0{d}" for d in range(3, 10)]
    assert json.loads(during.cursor or "")["alerted"] == []
    assert len(alerter.read()) == 7
    assert json.loads(after.cursor or "")["alerted"] == requested(during)


def test_a_day_whose_run_is_queued_is_not_late(platform: LocalPlatform, alerter):
    """A queued ingestion run has no partition status yet; its day is on its way, not late."""
    job = platform.defs.resolve_job_def("ingestion_job")
    platform.instance.create_run_for_job(job, tags={"dagster/partition": "2026-03-09"})

    result = evaluate(
        platform.instance,
        alerter,
        "2026-03-10T04:00:00+00:00",
        watching_since("2026-03-01T00:00:00+00:00"),
    )

    assert requested(result) == [f"2026-03-0{d}" for d in range(3, 9)]
    assert "2026-03-09" not in json.dumps(alerter.read())


def test_a_day_due_before_since_is_not_requested(instance, alerter):
    result = evaluate(
        instance,
        alerter,
        "2026-03-10T04:00:00+00:00",
        watching_since("2026-03-08T12:00:00+00:00"),
    )

    assert requested(result) == ["2026-03-08", "2026-03-09"]
    assert sorted(a["details"]["partition"] for a in alerter.read()) == ["2026-03-08", "2026-03-09"]


def test_stored_days_are_not_requested_but_failed_ones_are(platform: LocalPlatform, alerter):
    platform.ingest("2026-03-08")
    failed = platform.ingest("2026-03-09", scenario("missing_partition", "2026-03-09"))
    assert not failed.success

    result = evaluate(
        platform.instance,
        alerter,
        "2026-03-10T04:00:00+00:00",
        watching_since("2026-03-01T00:00:00+00:00"),
    )

    keys = requested(result)
    assert "2026-03-08" not in keys
    assert "2026-03-09" in keys
    assert any("failed" in a["message"] for a in alerter.read() if "2026-03-09" in a["title"])


def test_everything_stored_skips(instance, alerter):
    store(instance, RAW_TRANSACTIONS, *days("2026-03-03", 7))

    result = evaluate(
        instance,
        alerter,
        "2026-03-10T04:00:00+00:00",
        watching_since("2026-03-01T00:00:00+00:00"),
    )

    assert "2026-03-09" in skip_message(result)
    assert alerter.read() == []


# ingestion_sensor


def test_empty_instance_requests_only_the_baseline_days_first(instance):
    result = ingest_tick(instance)

    assert requested(result) == ["2026-02-02", "2026-02-03", "2026-02-04"]
    assert [r.run_key for r in requests(result)] == [
        "ingest-2026-02-02",
        "ingest-2026-02-03",
        "ingest-2026-02-04",
    ]
    assert all(r.tags == HISTORY_TAGS for r in requests(result))


def test_with_the_baseline_days_stored_it_waits_for_the_baseline(instance):
    store(instance, RAW_TRANSACTIONS, *WINDOW[:3])
    store(instance, VALIDATED_TRANSACTIONS, *WINDOW[:3])

    message = skip_message(ingest_tick(instance))

    assert "baseline" in message


def test_a_day_on_its_way_counts_towards_the_baseline_days(platform: LocalPlatform):
    """A queued run's day is not requested again, and the next baseline day is."""
    store(platform.instance, RAW_TRANSACTIONS, WINDOW[0])
    store(platform.instance, VALIDATED_TRANSACTIONS, WINDOW[0])
    job = platform.defs.resolve_job_def("ingestion_job")
    platform.instance.create_run_for_job(job, tags={"dagster/partition": WINDOW[1]})

    assert requested(ingest_tick(platform.instance)) == [WINDOW[2]]


def test_a_halted_baseline_day_is_replaced_by_the_next_one(instance):
    """A day stored raw but never validated (halted or failed) cannot be part of the baseline."""
    store(instance, RAW_TRANSACTIONS, *WINDOW[:3])
    store(instance, VALIDATED_TRANSACTIONS, WINDOW[0], WINDOW[2])

    assert requested(ingest_tick(instance)) == [WINDOW[3]]


@pytest.mark.parametrize("first_acceptance", [TRANSACTION_BASELINE, TRAINING_SET])
def test_after_the_bootstrap_every_remaining_landed_day_is_requested(instance, first_acceptance):
    store(instance, RAW_TRANSACTIONS, *WINDOW[:3])
    store(instance, first_acceptance)

    result = ingest_tick(instance)

    assert requested(result) == WINDOW[3:]
    assert WINDOW[-1] == "2026-03-19"
    assert all(r.tags == HISTORY_TAGS for r in requests(result))
    assert requests(result)[0].run_key == "ingest-2026-02-05"


def test_days_are_scored_and_reported_only_once_a_champion_serves(instance):
    """Before the first champion a day's run stops after its features: nothing to score with."""
    store(instance, RAW_TRANSACTIONS, *WINDOW[:-1])
    store(instance, TRANSACTION_BASELINE)
    job = {
        key.to_user_string()
        for key in defs.resolve_job_def("ingestion_job").asset_layer.selected_asset_keys
    }

    [before] = requests(ingest_tick(instance))
    store(instance, PRODUCTION_MODEL)
    [after] = requests(ingest_tick(instance))

    assert {"champion_scores", "model_monitoring_report"} <= job
    assert {key.to_user_string() for key in before.asset_selection or []} == job - {
        "champion_scores",
        "model_monitoring_report",
    }
    assert after.partition_key == before.partition_key and after.asset_selection is None


def test_the_next_landed_day_is_requested_as_a_new_day(instance):
    store(instance, RAW_TRANSACTIONS, *WINDOW)
    store(instance, TRANSACTION_BASELINE)

    assert "2026-03-19" in skip_message(ingest_tick(instance))
    # 2026-03-20 ended at midnight; it lands an hour later.
    assert "2026-03-19" in skip_message(ingest_tick(instance, "2026-03-21T00:59:00+00:00"))
    result = ingest_tick(instance, "2026-03-21T01:00:00+00:00")

    assert requested(result) == ["2026-03-20"]
    assert requests(result)[0].run_key == "ingest-2026-03-20"
    assert requests(result)[0].tags == {"flywheel/trigger": "new day"}


def test_nothing_before_the_first_business_day_is_requested(instance):
    assert "landed" in skip_message(ingest_tick(instance, "2026-01-02T00:30:00+00:00"))
    assert requested(ingest_tick(instance, "2026-01-02T01:00:00+00:00")) == ["2026-01-01"]
    assert requested(ingest_tick(instance, "2026-01-06T04:00:00+00:00")) == days("2026-01-01", 3)

    store(instance, TRANSACTION_BASELINE)
    assert requested(ingest_tick(instance, "2026-01-06T04:00:00+00:00")) == days("2026-01-01", 5)
