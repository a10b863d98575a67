"""Asset-graph tests of the ingestion gate: each incident kind trips the right check.

One temporary instance and data folder per module: seven clean days are ingested and accepted as
the baseline once, then every test ingests its own day with one scenario switched on, so the
volume check has history and the drift check has a baseline, as in production.
"""

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetCheckKey, AssetCheckSeverity, AssetKey, AssetSelection, instance_for_test
from support.harness import LocalPlatform, days, scenario

from platform_assets.common.keys import RAW_TRANSACTIONS
from platform_assets.ingestion.delivery_checks import (
    CONTRACT_CHECK,
    DRIFT_CHECK,
    DUPLICATE_RATE_CHECK,
    LABELS_CONTRACT_CHECK,
    NULL_RATE_CHECK,
    VOLUME_CHECK,
)
from platform_assets.ingestion.raw_transactions import ARRIVAL_CHECK
from resources.alerting import LocalAlerter
from resources.sources.incidents import Scenario
from resources.sources.simulator import CardPaymentsSimulator

pytestmark = pytest.mark.asset_graph

BASELINE_DAYS = days("2026-03-01", 7)
# The checks that read the stored raw partition (arrival is judged while fetching).
STORED_RAW_CHECKS = {
    CONTRACT_CHECK,
    VOLUME_CHECK,
    NULL_RATE_CHECK,
    DUPLICATE_RATE_CHECK,
    DRIFT_CHECK,
}
ALL_CHECKS = {ARRIVAL_CHECK, LABELS_CONTRACT_CHECK, *STORED_RAW_CHECKS}
DOWNSTREAM = {"validated_transactions", "quarantined_transactions"}


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Iterator[LocalPlatform]:
    with instance_for_test() as instance:
        local = LocalPlatform(instance, tmp_path_factory.mktemp("flywheel"))
        for day in BASELINE_DAYS:
            assert local.ingest(day).success
        assert local.accept_baseline(BASELINE_DAYS, reason="seven clean days").success
        yield local


def checks(result) -> dict[str, tuple[bool, AssetCheckSeverity]]:
    return {e.check_name: (e.passed, e.severity) for e in result.get_asset_check_evaluations()}


def materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def stored(platform: LocalPlatform, asset: str, day: str) -> pl.DataFrame:
    return platform.defs.resources["lake"].read_dataset(AssetKey(asset), day)


def alerts(platform: LocalPlatform) -> list[dict]:
    alerter = platform.defs.resources["alerter"]
    assert isinstance(alerter, LocalAlerter)
    return alerter.read()


def injected_rows(day: str, *scenarios) -> set[int]:
    """Ground truth from the simulator itself: positions of the rows it corrupted."""
    simulator = CardPaymentsSimulator(
        rows_per_day=1_000,
        scenarios=[
            Scenario(s.kind, date.fromisoformat(s.start), date.fromisoformat(s.end), s.intensity)
            for s in scenarios
        ],
    )
    truth = simulator.day(date.fromisoformat(day)).injected_bad_rows
    return set(truth["row"].to_list())


def assert_reconciles(platform: LocalPlatform, day: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    raw = stored(platform, "raw_transactions", day)
    valid = stored(platform, "validated_transactions", day)
    quarantined = stored(platform, "quarantined_transactions", day)
    assert valid.height + quarantined.height == raw.height
    # Nothing lost or altered: the two parts together are exactly the raw rows.
    rebuilt = pl.concat([valid, quarantined.drop("source_row", "failed_rules")])
    assert rebuilt.sort("transaction_id", "event_timestamp").equals(
        raw.sort("transaction_id", "event_timestamp")
    )
    return valid, quarantined


def test_clean_day_passes_every_check_and_quarantines_nothing(platform):
    day = "2026-03-10"
    result = platform.ingest(day)

    assert result.success
    assert checks(result) == {name: (True, checks(result)[name][1]) for name in ALL_CHECKS}
    assert {"raw_transactions", "fraud_labels", *DOWNSTREAM} <= materialized(result)
    valid, quarantined = assert_reconciles(platform, day)
    assert quarantined.is_empty() and valid.height > 900


@pytest.mark.parametrize(
    ("day", "kind", "intensity", "failing_check"),
    [
        ("2026-03-11", "null_spike", 0.015, NULL_RATE_CHECK),
        ("2026-03-12", "out_of_range", 0.01, CONTRACT_CHECK),
        ("2026-03-13", "duplicates", 0.01, DUPLICATE_RATE_CHECK),
    ],
)
def test_row_level_incident_quarantines_exactly_the_bad_rows(
    platform, day, kind, intensity, failing_check
):
    incident = scenario(kind, day, intensity)
    result = platform.ingest(day, incident)

    assert result.success, "a row-level incident under the tolerance must not halt the day"
    passed, severity = checks(result)[failing_check]
    assert not passed and severity == AssetCheckSeverity.WARN
    assert checks(result)[CONTRACT_CHECK] == (False, AssetCheckSeverity.WARN)
    assert materialized(result) >= DOWNSTREAM
    _, quarantined = assert_reconciles(platform, day)
    assert set(quarantined["source_row"].to_list()) == injected_rows(day, incident)
    assert quarantined["failed_rules"].str.len_chars().min() > 0


@pytest.mark.parametrize(
    ("day", "kind", "intensity", "halting_check"),
    [
        ("2026-03-14", "schema_change", 1.0, CONTRACT_CHECK),
        ("2026-03-15", "volume_drop", 0.7, VOLUME_CHECK),
        ("2026-03-16", "null_spike", 0.10, CONTRACT_CHECK),  # bad share over the 2 % tolerance
        ("2026-03-17", "covariate_drift", 0.6, DRIFT_CHECK),
    ],
)
def test_batch_level_incident_halts_keeps_raw_and_alerts(
    platform, day, kind, intensity, halting_check
):
    result = platform.ingest(day, scenario(kind, day, intensity))

    assert not result.success
    assert checks(result)[halting_check] == (False, AssetCheckSeverity.ERROR)
    assert materialized(result).isdisjoint(DOWNSTREAM), "nothing downstream of a halted day"
    assert stored(platform, "raw_transactions", day).height > 0, "raw rows kept for replay"
    sent = [a for a in alerts(platform) if a["details"].get("partition") == day]
    assert [a["details"]["check"] for a in sent] == [halting_check]
    assert sent[0]["severity"] == "error" and day in sent[0]["title"]


def test_late_partition_warns_and_proceeds(platform):
    day = "2026-03-18"
    result = platform.ingest(day, scenario("late_partition", day, 6))

    assert result.success
    assert checks(result)[ARRIVAL_CHECK] == (False, AssetCheckSeverity.WARN)
    assert materialized(result) >= DOWNSTREAM


def test_missing_partition_fails_the_fetch_and_stores_nothing(platform):
    day = "2026-03-19"
    result = platform.ingest(day, scenario("missing_partition", day))

    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "has not been delivered" in failure.step_failure_data.error.cause.message
    assert not materialized(result) & {"raw_transactions", *DOWNSTREAM}


def test_concept_drift_is_invisible_to_the_ingestion_gate(platform):
    """The fraud pattern changes, the inputs do not: that is monitoring's job, not a halt."""
    day = "2026-03-20"
    result = platform.ingest(day, scenario("concept_drift", day, 1.0))

    assert result.success
    assert checks(result)[DRIFT_CHECK][0]


def test_halted_day_replays_from_stored_raw_after_a_new_baseline(platform):
    day = "2026-03-21"
    drift = scenario("covariate_drift", day, 0.6)
    assert not platform.ingest(day, drift).success

    assert platform.accept_baseline([day], reason="new market launched").success
    replay = platform.materialize(
        AssetSelection.checks(
            *(AssetCheckKey(RAW_TRANSACTIONS, name) for name in STORED_RAW_CHECKS)
        )
        | AssetSelection.assets(*DOWNSTREAM),
        day,
        [drift],
    )

    assert replay.success
    assert "raw_transactions" not in materialized(replay), "replay must not re-fetch the source"
    assert checks(replay)[DRIFT_CHECK][0]
    assert_reconciles(platform, day)
    # The earlier baseline is still on disk; the accepted one moved.
    versions = list((platform.data_dir / "lake/baselines/transactions").glob("*.json"))
    assert len(versions) >= 2


def test_drift_check_links_an_evidently_report(platform):
    day = "2026-03-22"
    result = platform.ingest(day, scenario("covariate_drift", day, 0.3), drift_report_rows=300)

    evaluation = next(
        e for e in result.get_asset_check_evaluations() if e.check_name == DRIFT_CHECK
    )
    report = evaluation.metadata["evidently_report"].value
    assert report.endswith(f"raw_transactions-{day}.html")
    assert "<html" in Path(report).read_text(encoding="utf-8")[:4096].lower()


def test_materializations_record_data_version_row_count_and_schema(platform):
    day = "2026-03-23"
    first = platform.ingest(day)
    second = platform.ingest(day)

    def versions(result):
        return {
            e.asset_key.to_user_string(): e.event_specific_data.materialization.tags[
                "dagster/data_version"
            ]
            for e in result.get_asset_materialization_events()
        }

    assert versions(first) == versions(second), "same content, same data version"
    raw = next(
        e.event_specific_data.materialization
        for e in first.get_asset_materialization_events()
        if e.asset_key == AssetKey("raw_transactions")
    )
    assert (
        raw.metadata["dagster/row_count"].value == stored(platform, "raw_transactions", day).height
    )
    columns = [c.name for c in raw.metadata["dagster/column_schema"].value.columns]
    assert columns[0] == "transaction_id" and "event_timestamp" in columns


def test_re_ingesting_a_day_keeps_every_delivery_and_downstream_reads_the_current_one(platform):
    day = "2026-03-24"
    lake = platform.defs.resources["lake"]
    # Judged against the clean week again (an earlier test accepted a drifted day).
    assert platform.accept_baseline(BASELINE_DAYS, reason="the clean week again").success
    assert platform.ingest(day).success
    first = stored(platform, "raw_transactions", day)
    # The source delivers the day again, now with duplicated rows.
    second_run = platform.ingest(day, scenario("duplicates", day, 0.01))
    assert second_run.success

    assert lake.versions(RAW_TRANSACTIONS, day) == ["delivery-0001", "delivery-0002"]
    assert lake.current_version(RAW_TRANSACTIONS, day) == "delivery-0002"
    assert lake.read_version(RAW_TRANSACTIONS, day, "delivery-0001").equals(first)
    current = stored(platform, "raw_transactions", day)
    assert current.height > first.height, "the second delivery is the one read"
    assert_reconciles(platform, day)  # validated + quarantined rows are the current delivery's
    (raw,) = second_run.asset_materializations_for_node("raw_transactions")
    assert raw.metadata["current_delivery"].value == "delivery-0002"
    assert raw.metadata["deliveries_kept"].value == 2
    assert raw.metadata["dagster/row_count"].value == current.height
