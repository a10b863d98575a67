"""Unit tests of the feature computations on hand-built transactions."""

import datetime

import polars as pl
import pytest

from platform_assets.features import engineering as fe
from platform_assets.features import merchant_risk as mr
from platform_assets.features.labelling import labelled_transactions, matured_days

pytestmark = pytest.mark.unit

UTC = datetime.UTC


def at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


def transactions(*rows: tuple) -> pl.LazyFrame:
    return pl.LazyFrame(
        [
            {
                "transaction_id": number,
                "customer_id": customer,
                "merchant_id": merchant,
                "amount": amount,
                "country": country,
                "channel": "pos",
                "event_timestamp": at(when),
            }
            for number, (customer, merchant, amount, country, when) in enumerate(rows, start=1)
        ],
        schema_overrides={"event_timestamp": pl.Datetime("us", "UTC")},
    )


def test_customer_windows_end_at_and_include_each_transaction():
    history = transactions(
        (1, 10, 10.0, "FR", "2026-01-01T12:00:00"),  # history only: the day before
        (1, 10, 20.0, "US", "2026-01-02T10:00:00"),
        (1, 11, 30.0, "US", "2026-01-02T10:30:00"),
        (1, 10, 60.0, "US", "2026-01-02T11:15:00"),
        (2, 12, 5.0, "GB", "2026-01-02T09:00:00"),
    )
    rows = fe.customer_features(history, [datetime.date(2026, 1, 2)])
    assert rows.schema == fe.CUSTOMER_FEATURE_SCHEMA
    first = rows.filter(pl.col("customer_id") == 1).sort(fe.TIMESTAMP)
    assert first["txn_count_1h"].to_list() == [1, 2, 2]
    assert first["txn_count_24h"].to_list() == [2, 3, 4]
    assert first["amount_sum_1h"].to_list() == [20.0, 50.0, 90.0]
    assert first["distinct_merchants_24h"].to_list() == [1, 2, 2]
    assert first["amount_max_30d"].to_list() == [20.0, 30.0, 60.0]
    assert first["amount_mean_30d"][-1] == pytest.approx(30.0)
    # Home country comes from the days before: the customer's one earlier payment was in FR.
    assert set(first["home_country"]) == {"FR"}
    assert first["last_transaction_epoch_s"][0] == int(at("2026-01-02T10:00:00").timestamp())
    # No earlier history: no home country yet; no rows for the history day itself.
    assert rows.filter(pl.col("customer_id") == 2)["home_country"].to_list() == [None]
    assert rows[fe.TIMESTAMP].dt.date().unique().to_list() == [datetime.date(2026, 1, 2)]


def test_merchant_chargeback_rate_counts_matured_transactions_only():
    history = transactions(
        (1, 7, 10.0, "US", "2026-01-01T10:00:00"),  # matured by the end of 01-05 (3 days)
        (2, 7, 10.0, "US", "2026-01-02T10:00:00"),  # matured
        (3, 7, 10.0, "US", "2026-01-04T10:00:00"),  # young: its chargeback may still come
    )
    chargebacks = pl.LazyFrame(
        {
            "transaction_id": [1, 3],
            "reported_at": [at("2026-01-03T08:00:00"), at("2026-01-05T08:00:00")],
        },
        schema_overrides={"reported_at": pl.Datetime("us", "UTC")},
    )
    rows = mr.merchant_features(
        history,
        chargebacks,
        [datetime.date(2026, 1, 5)],
        maturity_days=3,
        risk_window_days=5,
        delay_days=1,
    )
    assert rows.schema == mr.MERCHANT_FEATURE_SCHEMA
    row = rows.row(0, named=True)
    assert row[fe.TIMESTAMP] == at("2026-01-06T00:00:00")
    assert row["merchant_matured_txn_count"] == 2
    assert row["merchant_chargeback_rate"] == pytest.approx(0.5)
    assert row["merchant_txn_count_7d"] == 3
    assert row["merchant_txn_count_24h"] == 0


def test_merchant_without_matured_transactions_has_no_rate():
    rows = mr.merchant_features(
        transactions((1, 7, 10.0, "US", "2026-01-05T10:00:00")),
        pl.LazyFrame(schema={"transaction_id": pl.Int64, "reported_at": pl.Datetime("us", "UTC")}),
        [datetime.date(2026, 1, 5)],
        maturity_days=3,
        risk_window_days=5,
        delay_days=1,
    )
    assert rows["merchant_matured_txn_count"].to_list() == [0]
    assert rows["merchant_chargeback_rate"].to_list() == [None]
    assert rows["merchant_fraud_rate_1d"].to_list() == [None]


def test_merchant_fraud_rates_count_known_frauds_one_label_delay_back():
    # A terminal compromised on 01-20: the matured rate (30 days of maturity) cannot see it
    # before February, the rates one week back see its frauds reported so far.
    history = transactions(
        (1, 7, 10.0, "US", "2026-01-20T10:00:00"),  # fraud, reported 01-23
        (2, 7, 10.0, "US", "2026-01-21T10:00:00"),  # fraud, reported 01-30: not known yet
        (3, 7, 10.0, "US", "2026-01-21T11:00:00"),  # legitimate
        (4, 7, 10.0, "US", "2026-01-10T10:00:00"),  # legitimate, in the 30-day window only
        (5, 7, 10.0, "US", "2026-01-25T10:00:00"),  # inside the delay: in no delayed window
    )
    chargebacks = pl.LazyFrame(
        {
            "transaction_id": [1, 2],
            "reported_at": [at("2026-01-23T08:00:00"), at("2026-01-30T08:00:00")],
        },
        schema_overrides={"reported_at": pl.Datetime("us", "UTC")},
    )
    rows = mr.merchant_features(
        history,
        chargebacks,
        [datetime.date(2026, 1, 28)],
        maturity_days=30,
        risk_window_days=60,
        delay_days=7,
    )
    row = rows.row(0, named=True)
    # The delayed windows end at 01-22 00:00 (the end of 01-28 minus 7 days).
    assert row["merchant_matured_txn_count"] == 0
    assert (row["merchant_delayed_txn_count_1d"], row["merchant_fraud_rate_1d"]) == (2, 0.0)
    assert row["merchant_delayed_txn_count_7d"] == 3
    assert row["merchant_fraud_rate_7d"] == pytest.approx(1 / 3)
    assert row["merchant_delayed_txn_count_30d"] == 4
    assert row["merchant_fraud_rate_30d"] == pytest.approx(1 / 4)
    assert mr.merchant_history_days([datetime.date(2026, 1, 28)], 3, 5, 7)[0] == datetime.date(
        2025, 12, 23
    )


def test_training_days_refuse_labels_that_have_not_matured():
    now = at("2026-01-14T06:00:00")
    assert matured_days("", 3, now, maturity_days=3) == [
        datetime.date(2026, 1, 8),
        datetime.date(2026, 1, 9),
        datetime.date(2026, 1, 10),
    ]
    with pytest.raises(ValueError, match="last_day 2026-01-11 is too recent"):
        matured_days("2026-01-11", 28, now, maturity_days=3)


def test_entity_rows_ask_just_before_the_transaction_and_carry_the_label():
    history = transactions(
        (1, 7, 10.0, "US", "2026-01-01T10:00:00"), (2, 7, 12.0, "US", "2026-01-01T11:00:00")
    )
    chargebacks = pl.LazyFrame({"transaction_id": [2]})
    rows = labelled_transactions(history, chargebacks).sort("transaction_id")
    assert rows["is_fraud"].to_list() == [False, True]
    assert rows["channel"].to_list() == ["pos", "pos"]  # kept for the evaluation's slices
    assert rows["event_timestamp"][0] == at("2026-01-01T09:59:59.999999")
    assert rows["transaction_epoch_s"][0] == int(at("2026-01-01T10:00:00").timestamp())
