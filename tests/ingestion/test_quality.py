"""Unit tests of the ingestion gate's pure logic: contract errors, PSI, anomalies."""

import datetime

import polars as pl
import pytest

from platform_assets.common.markdown import to_markdown
from platform_assets.ingestion.anomalies import duplicate_rate, volume_ratio
from platform_assets.ingestion.contract import (
    FIRST_OCCURRENCE_RULE,
    split_rows,
    validate_chargebacks,
    validate_transactions,
)
from platform_assets.ingestion.drift import build_profile, distribution_drift, psi
from resources.sources.simulator import CardPaymentsSimulator

pytestmark = pytest.mark.unit

DAY = datetime.date(2026, 3, 2)


@pytest.fixture(scope="module")
def batch() -> pl.DataFrame:
    return CardPaymentsSimulator(rows_per_day=500).day(DAY).transactions


def test_clean_batch_meets_the_contract(batch):
    result = validate_transactions(batch, DAY)

    assert result.bad_rows == 0 and result.schema_failures.is_empty()
    valid, quarantined = split_rows(batch, result)
    assert valid.equals(batch) and quarantined.is_empty()


def test_bad_values_name_the_column_and_the_rule(batch):
    broken = batch.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(-1.0).otherwise("amount").alias("amount"),
        pl.when(pl.int_range(pl.len()) == 5)
        .then(pl.lit("XX"))
        .otherwise("country")
        .alias("country"),
    )

    result = validate_transactions(broken, DAY)
    _, quarantined = split_rows(broken, result)

    rules = dict(zip(quarantined["source_row"], quarantined["failed_rules"], strict=True))
    assert set(rules) == {3, 5}
    assert rules[3].startswith("amount: in_range")
    assert rules[5].startswith("country: isin")
    assert quarantined.filter(pl.col("source_row") == 3)["amount"].item() == -1.0, "kept as is"


def test_a_repeat_is_quarantined_but_its_first_copy_is_kept(batch):
    repeated = pl.concat([batch, batch.slice(10, 1)])

    result = validate_transactions(repeated, DAY)
    valid, quarantined = split_rows(repeated, result)

    assert quarantined["source_row"].to_list() == [batch.height]
    assert quarantined["failed_rules"].item() == f"transaction_id: {FIRST_OCCURRENCE_RULE}"
    assert valid.height == batch.height
    assert duplicate_rate(repeated) == pytest.approx(1 / repeated.height)


def test_rows_from_another_day_are_quarantined(batch):
    shifted = batch.with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(pl.col("event_timestamp") - datetime.timedelta(days=1))
        .otherwise("event_timestamp")
        .alias("event_timestamp")
    )

    result = validate_transactions(shifted, DAY)

    assert result.row_failures["source_row"].to_list() == [0]
    assert "event_timestamp: in_range" in result.row_failures["failed_rules"].item()


def test_schema_break_refuses_to_split(batch):
    renamed = batch.rename({"amount": "amount_cents"})

    result = validate_transactions(renamed, DAY)

    assert set(result.schema_failures["check"]) >= {"column_in_dataframe", "column_in_schema"}
    with pytest.raises(ValueError, match="schema level.*amount"):
        split_rows(renamed, result)


def test_wrong_type_is_a_schema_failure(batch):
    result = validate_transactions(batch.with_columns(pl.col("customer_id").cast(pl.String)), DAY)

    assert "customer_id" in result.schema_failures["column"].to_list()


def test_psi_is_zero_for_identical_shares_and_grows_with_shift():
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0
    small = psi([0.5, 0.5], [0.55, 0.45])
    large = psi([0.5, 0.5], [0.9, 0.1])
    assert 0 < small < 0.1 < 0.25 < large


def test_drift_verdicts_follow_the_thresholds(batch):
    profile = build_profile(batch, [DAY.isoformat()])
    doubled = batch.with_columns(pl.col("amount") * 3)

    same = distribution_drift(batch, profile, warn=0.1, halt=0.25)
    moved = distribution_drift(doubled, profile, warn=0.1, halt=0.25)
    gone = distribution_drift(batch.drop("channel"), profile, warn=0.1, halt=0.25)

    assert set(same["verdict"]) == {"ok"}
    assert moved.filter(pl.col("column") == "amount")["verdict"].item() == "halt"
    assert gone.filter(pl.col("column") == "channel")["verdict"].item() == "missing"


def test_unseen_category_counts_as_drift(batch):
    profile = build_profile(batch, [DAY.isoformat()])
    novel = batch.with_columns(pl.lit("ZZ").alias("country"))

    table = distribution_drift(novel, profile, warn=0.1, halt=0.25)

    assert table.filter(pl.col("column") == "country")["verdict"].item() == "halt"


def test_volume_ratio_uses_the_median():
    assert volume_ratio(50, [100, 100, 1_000]) == 0.5
    assert volume_ratio(100, [90, 110]) == 1.0
    assert volume_ratio(100, []) is None


def test_markdown_table_escapes_and_truncates():
    frame = pl.DataFrame({"rule": ["a|b", "c", "d"], "share": [0.123456, 1.0, 2.0]})

    text = to_markdown(frame, limit=2)

    assert "a\\|b" in text and "0.1235" in text and "1 more rows" in text
    assert to_markdown(frame.clear()) == "_none_"


def test_labels_contract_rejects_a_label_reported_before_its_transaction():
    labels = CardPaymentsSimulator(rows_per_day=2_000).chargebacks(datetime.date(2026, 3, 20))
    assert labels.height > 0
    early = labels.with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(pl.col("transaction_timestamp") + datetime.timedelta(days=60))
        .otherwise("transaction_timestamp")
        .alias("transaction_timestamp")
    )

    assert validate_chargebacks(labels, datetime.date(2026, 3, 20)).bad_rows == 0
    result = validate_chargebacks(early, datetime.date(2026, 3, 20))

    assert result.row_failures["source_row"].to_list() == [0]
    assert "reported_after_transaction" in result.row_failures["failed_rules"].item()
