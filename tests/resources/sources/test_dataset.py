"""The dataset declaration: checked as it loads, and the contract's names and labels it derives."""

import datetime
from pathlib import Path

import polars as pl
import pytest

from platform_assets.ingestion.contract import transaction_schema, validate_transactions
from resources.sources import schema
from resources.sources.dataset import (
    DATASET_VARIABLE,
    LABEL_ON_ROW,
    _dataset_at,
    declared_dataset,
    load_dataset,
)
from resources.sources.systems import FileSource, PartitionNotReady

pytestmark = pytest.mark.unit

DECLARATION = """
name: payments
first_business_day: 2018-04-01
source: {kind: files, directory: exports, file_format: csv}
columns:
  transaction_id: TX_ID
  customer_id: CUSTOMER
  merchant_id: TERMINAL
  amount: TX_AMOUNT
  event_timestamp: TX_DATETIME
ignored_columns: [SCENARIO]
labels: {column: TX_FRAUD, delay_days: 7, maturity_days: 7}
rules: {min_id: 0, min_amount: 0, max_amount: 1000}
"""
DAY = datetime.date(2018, 4, 2)


def _declare(folder: Path, text: str = DECLARATION) -> Path:
    path = folder / "dataset.yaml"
    path.write_text(text)
    return path


def _payments(day: datetime.date, frauds: list[bool]) -> pl.DataFrame:
    start = datetime.datetime.combine(day, datetime.time(9))
    return pl.DataFrame(
        {
            "TX_ID": list(range(len(frauds))),
            "CUSTOMER": [0] * len(frauds),
            "TERMINAL": [3] * len(frauds),
            "TX_AMOUNT": [12.5] * len(frauds),
            "TX_DATETIME": [start + datetime.timedelta(minutes=n) for n in range(len(frauds))],
            "TX_FRAUD": [int(f) for f in frauds],
            "SCENARIO": [0] * len(frauds),
        }
    )


@pytest.fixture
def declared(tmp_path, monkeypatch):
    """The declaration above as this process's dataset, with its files under ``exports``."""
    monkeypatch.setenv(DATASET_VARIABLE, str(_declare(tmp_path)))
    _dataset_at.cache_clear()
    yield load_dataset(tmp_path / "dataset.yaml")
    _dataset_at.cache_clear()


def test_the_simulator_is_declared_with_its_own_vocabularies():
    simulator = declared_dataset()
    assert simulator.source.kind == "simulator"
    assert simulator.vocabularies == {
        "currency": list(schema.CURRENCIES),
        "merchant_category": list(schema.MERCHANT_CATEGORIES),
        "channel": list(schema.CHANNELS),
        "country": list(schema.COUNTRIES),
    }
    assert simulator.label_reasons == list(schema.CHARGEBACK_REASONS)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("TX_AMOUNT", "TX_AMT"), None),
        (("  amount: TX_AMOUNT\n", ""), r"required roles \['amount'\] are not mapped"),
        (
            ("  amount: TX_AMOUNT", "  amount: TX_AMOUNT\n  chanel: CHANNEL"),
            r"\['chanel'\] are not roles",
        ),
        (("directory: exports, ", ""), "source.directory is required for a files source"),
        (("delay_days: 7", "delay_days: 7, dealy: 3"), "labels.dealy"),
        (("first_business_day: 2018-04-01", "first_business_day: April"), "first_business_day"),
    ],
)
def test_a_wrong_declaration_is_refused_naming_the_field(tmp_path, change, message):
    path = _declare(tmp_path, DECLARATION.replace(*change))
    if message is None:  # a renamed source column is the user's business, not an error
        assert load_dataset(path).columns["amount"] == "TX_AMT"
        return
    with pytest.raises(ValueError, match=message) as error:
        load_dataset(path)
    assert str(path) in str(error.value)


def test_a_relative_directory_is_read_next_to_the_declaration(declared, tmp_path):
    assert declared.source.directory == str(tmp_path / "exports")


def test_payments_arrive_under_the_contracts_names_without_label_or_ignored_columns(
    declared, tmp_path
):
    folder = tmp_path / "exports" / "transactions"
    folder.mkdir(parents=True)
    _payments(DAY, [False, True, False]).write_csv(folder / "all.csv")
    late = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)

    delivery = FileSource(directory=str(tmp_path / "exports"), file_format="csv").fetch(
        "transactions", DAY, late
    )

    assert delivery.frame.columns == [
        "transaction_id", "customer_id", "merchant_id", "amount", "event_timestamp"
    ]  # fmt: skip
    # Ids from 0 and no channel, country, currency or category: the declared contract holds.
    result = validate_transactions(delivery.frame, DAY)
    assert (result.schema_failures.height, result.bad_rows) == (0, 0)
    assert set(transaction_schema().columns) == set(delivery.frame.columns)


def test_labels_on_the_row_are_reported_one_delay_after_the_payment(declared, tmp_path):
    folder = tmp_path / "exports" / "transactions"
    folder.mkdir(parents=True)
    _payments(DAY, [False, True, True]).write_csv(folder / "all.csv")
    source = FileSource(directory=str(tmp_path / "exports"), file_format="csv")
    report_day = DAY + datetime.timedelta(days=7)

    labels = source.fetch(
        "chargebacks", report_day, datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    )

    assert labels.frame["transaction_id"].to_list() == [1, 2]
    assert labels.frame["reason"].unique().to_list() == [LABEL_ON_ROW]
    delay = labels.frame["reported_at"] - labels.frame["transaction_timestamp"]
    assert delay.unique().to_list() == [datetime.timedelta(days=7)]
    # Before the report day ends its labels are not known; before the first day there are none.
    with pytest.raises(PartitionNotReady, match="known once the day ends"):
        source.fetch(
            "chargebacks", report_day, datetime.datetime(2018, 4, 9, 12, tzinfo=datetime.UTC)
        )
    early = source.fetch("chargebacks", DAY, datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
    assert early.frame.is_empty()
