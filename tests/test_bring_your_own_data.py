"""Bring your own data: a dataset in a shape unlike the simulator's, onboarded by declaration.

The fixture writes what a user would bring - one CSV of card payments from 2018 with its own
column names, ids from 0, the fraud flag on the row, no channel, country, currency or category,
and a column of its own that is not a feature - and a dataset declaration for it. The platform
then runs, in its own process on a temporary instance, from ingestion to the evaluation gate
with no project file edited (``tests/support/onboarding.py``).
"""

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from resources.sources.simulator import CardPaymentsSimulator

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
FIRST_DAY = datetime.date(2018, 4, 1)
DAYS = 22
ROWS_PER_DAY = 4_000
LABEL_DELAY = 7
# Payments simulated in 2026, moved to 2018 as the user's data.
SHIFT = datetime.date(2026, 4, 1) - FIRST_DAY
DECLARATION = f"""
name: card payments 2018 (test fixture)
first_business_day: {FIRST_DAY}
source:
  kind: files
  directory: payments
  file_format: csv
columns:
  transaction_id: TRANSACTION_ID
  customer_id: CUSTOMER_ID
  merchant_id: TERMINAL_ID
  amount: TX_AMOUNT
  event_timestamp: TX_DATETIME
ignored_columns: [TX_FRAUD_SCENARIO]
labels:
  column: TX_FRAUD
  delay_days: {LABEL_DELAY}
  maturity_days: {LABEL_DELAY}
rules:
  min_id: 0
  min_amount: 0
  max_amount: 100000
monotone_increasing: [merchant_fraud_rate_7d]
"""
BAD_AMOUNT_ROW = 5


def user_payments(days: list[datetime.date]) -> pl.DataFrame:
    """The simulator's payments as another business would export them."""
    simulator = CardPaymentsSimulator(seed=11, rows_per_day=ROWS_PER_DAY, max_label_delay_days=7)
    simulated = [day + SHIFT for day in days]
    payments = pl.concat([simulator.day(day).transactions for day in simulated])
    reports = [simulated[0] + datetime.timedelta(days=n) for n in range(len(days) + 7)]
    frauds = pl.concat([simulator.chargebacks(day) for day in reports])["transaction_id"]
    return payments.sort("event_timestamp").select(
        TRANSACTION_ID=pl.int_range(pl.len(), dtype=pl.Int64),
        TX_DATETIME=(pl.col("event_timestamp") - SHIFT).dt.replace_time_zone(None),
        CUSTOMER_ID=pl.col("customer_id") - 1,
        TERMINAL_ID=pl.col("merchant_id") - 1,
        # One amount the user's system got wrong: quarantined, naming the field and the rule.
        TX_AMOUNT=pl.when(pl.int_range(pl.len()) == BAD_AMOUNT_ROW)
        .then(-12.5)
        .otherwise(pl.col("amount")),
        TX_FRAUD=pl.col("transaction_id").is_in(frauds.implode()).cast(pl.Int8),
        TX_FRAUD_SCENARIO=pl.lit(0, dtype=pl.Int8),
    )


@pytest.fixture(scope="module")
def onboarded(tmp_path_factory) -> tuple[dict, pl.DataFrame]:
    folder = tmp_path_factory.mktemp("byod")
    days = [FIRST_DAY + datetime.timedelta(days=n) for n in range(DAYS)]
    payments = user_payments(days)
    (folder / "payments" / "transactions").mkdir(parents=True)
    payments.write_csv(folder / "payments" / "transactions" / "payments.csv")
    (folder / "dataset.yaml").write_text(DECLARATION)
    (folder / "dagster_home").mkdir()
    now = datetime.datetime.combine(days[-1], datetime.time(6), tzinfo=datetime.UTC)
    plan = {
        "days": [day.isoformat() for day in days],
        "baseline_days": [day.isoformat() for day in days[:3]],
        "now": (now + datetime.timedelta(days=1)).isoformat(),
        # The latest matured day is now - delay - 1: 2018-04-15; eight days up to it.
        "training_set": {"days": 8},
    }
    env = {
        **os.environ,
        "FLYWHEEL_DATASET": str(folder / "dataset.yaml"),
        "FLYWHEEL_DATA_DIR": str(folder / "data"),
        "DAGSTER_HOME": str(folder / "dagster_home"),
    }
    completed = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "support" / "onboarding.py"), json.dumps(plan)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-5000:]
    return json.loads(completed.stdout.strip().splitlines()[-1]), payments


def test_every_stage_runs_on_the_declared_data_from_its_own_first_day(onboarded):
    summary, _ = onboarded
    assert summary["failed"] == [], summary["gate_verdict"]
    assert summary["first_partition"] == FIRST_DAY.isoformat()
    # The contract is the declaration's: the roles the data has, under the platform's names.
    assert sorted(summary["validated_columns"]) == sorted(
        ["transaction_id", "customer_id", "merchant_id", "amount", "event_timestamp"]
    )
    # Every day passed its volume and drift checks; the contract flagged one day, the day of the
    # bad row, which was quarantined rather than halting the day.
    verdicts = summary["checks_over_runs"]
    assert all(verdicts["volume"]) and all(verdicts["distribution_drift"])
    assert verdicts["contract"].count(False) == 1 and len(verdicts["contract"]) == DAYS


def test_ids_from_zero_pass_and_a_bad_amount_is_quarantined_naming_field_and_rule(onboarded):
    summary, payments = onboarded
    (quarantined,) = summary["quarantined"]
    assert quarantined["transaction_id"] == BAD_AMOUNT_ROW
    assert quarantined["failed_rules"].startswith("amount: in_range(0")
    assert payments.filter(pl.col("CUSTOMER_ID") == 0).height > 0


def test_labels_on_the_row_become_the_labels_feed_a_delay_later(onboarded):
    summary, payments = onboarded
    # Reported LABEL_DELAY days after the payment: the frauds of all but the last week.
    last_reported = FIRST_DAY + datetime.timedelta(days=DAYS - 1 - LABEL_DELAY)
    reported = payments.filter(
        (pl.col("TX_FRAUD") == 1) & (pl.col("TX_DATETIME").dt.date() <= last_reported)
    )
    assert summary["labels"] == reported.height > 0


def test_the_candidate_uses_no_absent_role_and_reaches_the_gate(onboarded):
    summary, _ = onboarded
    inputs = summary["model_inputs"]
    # No feature of a role the data lacks; the raw amount and the delayed terminal risk in.
    assert "is_foreign" not in inputs
    assert {"amount", "merchant_fraud_rate_7d", "is_weekend", "is_night"} <= set(inputs)
    assert summary["training_set"]["last_day"] == "2018-04-15"
    assert int(summary["training_set"]["frauds"]) > 50
    # On 32,000 payments without channel or country, the model beats the baseline and floors.
    assert summary["gate_passed"] is True, summary["gate_verdict"]
