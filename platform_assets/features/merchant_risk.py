"""The merchant features of the fraud model as pure polars, free of Dagster and Feast.

Merchant risk is one row per merchant and day, stamped at the end of the day: the rows of Feast's
``merchant_risk`` view (``feature_repo/``). Its chargeback rate counts only transactions whose
labels have matured, since a young transaction without a chargeback is not yet known to be
legitimate. A terminal compromised for a few weeks would be over before its matured rate moved,
so its fraud rates over the last 1, 7 and 30 days are also taken over the payments of the
windows ending one label delay ago (most of their frauds are known by then), counting the
frauds reported so far.
"""

import datetime
from collections.abc import Sequence

import polars as pl

from platform_assets.features.engineering import TIMESTAMP, day_range, day_start

MERCHANT_VOLUME_WINDOW = datetime.timedelta(days=7)
# Windows (days) of the merchant's fraud rates taken one label delay ago.
DELAYED_RISK_WINDOWS = (1, 7, 30)

MERCHANT_FEATURE_SCHEMA = pl.Schema(
    {
        "merchant_id": pl.Int64,
        TIMESTAMP: pl.Datetime("us", "UTC"),
        "merchant_txn_count_24h": pl.Int64,
        "merchant_txn_count_7d": pl.Int64,
        "merchant_amount_mean_7d": pl.Float64,
        "merchant_matured_txn_count": pl.Int64,
        "merchant_chargeback_rate": pl.Float64,
        **{
            name: dtype
            for window in DELAYED_RISK_WINDOWS
            for name, dtype in (
                (f"merchant_delayed_txn_count_{window}d", pl.Int64),
                (f"merchant_fraud_rate_{window}d", pl.Float64),
            )
        },
    }
)


def merchant_history_span(maturity_days: int, risk_window_days: int, delay_days: int) -> int:
    """How many days before its own day a merchant row's windows reach back."""
    return max(maturity_days + risk_window_days, delay_days + max(DELAYED_RISK_WINDOWS)) - 1


def merchant_history_days(
    days: Sequence[datetime.date], maturity_days: int, risk_window_days: int, delay_days: int
) -> list[datetime.date]:
    """The transaction days that the merchant rows of ``days`` are computed from."""
    span = merchant_history_span(maturity_days, risk_window_days, delay_days)
    return day_range(min(days) - datetime.timedelta(days=span), max(days))


def merchant_features(
    transactions: pl.LazyFrame,
    chargebacks: pl.LazyFrame,
    days: Sequence[datetime.date],
    maturity_days: int,
    risk_window_days: int,
    delay_days: int,
) -> pl.DataFrame:
    """Each merchant's volume and fraud rates at the end of each of ``days``.

    Args:
        transactions: Validated transactions of ``merchant_history_days(...)``.
        chargebacks: Fraud labels reported up to the end of the last of ``days``.
        days: The days to emit rows for; each row is stamped at the end of its day.
        maturity_days: A transaction's label is final this many days after it.
        risk_window_days: Days of matured transactions the chargeback rate is taken over.
        delay_days: The delayed fraud rates' windows end this many days before the row.

    Returns:
        One row per merchant active in any window, ``MERCHANT_FEATURE_SCHEMA``. A rate is null
        for a merchant with no transaction in its window.
    """
    # Lazy throughout: each day's windows are read through the scan's filters and reduced to
    # one row per merchant by the streaming engine, never held as months of transactions.
    history = transactions.select("transaction_id", "merchant_id", "amount", TIMESTAMP)
    reports = chargebacks.select("transaction_id", "reported_at")
    frames = [
        _merchant_day(history, reports, day, maturity_days, risk_window_days, delay_days)
        for day in sorted(days)
    ]
    counts = [
        name
        for name, dtype in MERCHANT_FEATURE_SCHEMA.items()
        if dtype == pl.Int64 and name != "merchant_id"
    ]
    rows = pl.concat(frames).with_columns(pl.col(counts).fill_null(0))
    return (
        rows.select(MERCHANT_FEATURE_SCHEMA.names())
        .cast(MERCHANT_FEATURE_SCHEMA)
        .sort(TIMESTAMP, "merchant_id")
        .collect(engine="streaming")
    )


def _merchant_day(
    history: pl.LazyFrame,
    reports: pl.LazyFrame,
    day: datetime.date,
    maturity_days: int,
    risk_window_days: int,
    delay_days: int,
) -> pl.LazyFrame:
    """One row per merchant active at the end of ``day``: volume and fraud rates."""
    end = day_start(day) + datetime.timedelta(days=1)
    matured_end = end - datetime.timedelta(days=maturity_days)
    matured_start = matured_end - datetime.timedelta(days=risk_window_days)
    recent = history.filter(pl.col(TIMESTAMP).is_between(end - MERCHANT_VOLUME_WINDOW, end, "left"))
    volume = recent.group_by("merchant_id").agg(
        merchant_txn_count_24h=(pl.col(TIMESTAMP) >= end - datetime.timedelta(days=1)).sum(),
        merchant_txn_count_7d=pl.len(),
        merchant_amount_mean_7d=pl.col("amount").mean(),
    )
    known = reports.filter(pl.col("reported_at") < end).select("transaction_id", charged=True)
    matured = (
        history.filter(pl.col(TIMESTAMP).is_between(matured_start, matured_end, "left"))
        .join(known, on="transaction_id", how="left")
        .group_by("merchant_id")
        .agg(
            merchant_matured_txn_count=pl.len(),
            charged=pl.col("charged").sum(),
        )
    )
    delayed_end = end - datetime.timedelta(days=delay_days)
    delayed_start = delayed_end - datetime.timedelta(days=max(DELAYED_RISK_WINDOWS))
    delayed = (
        history.filter(pl.col(TIMESTAMP).is_between(delayed_start, delayed_end, "left"))
        .join(known, on="transaction_id", how="left")
        .group_by("merchant_id")
        .agg(
            expression
            for window in DELAYED_RISK_WINDOWS
            for expression in _delayed_window(delayed_end, window)
        )
    )
    rows = volume.join(matured, on="merchant_id", how="full", coalesce=True)
    return rows.join(delayed, on="merchant_id", how="full", coalesce=True).with_columns(
        pl.lit(end).alias(TIMESTAMP),
        merchant_chargeback_rate=pl.col("charged") / pl.col("merchant_matured_txn_count"),
    )


def _delayed_window(delayed_end: datetime.datetime, window: int) -> list[pl.Expr]:
    """A merchant's payments in the ``window`` days before ``delayed_end`` and their fraud rate."""
    inside = pl.col(TIMESTAMP) >= delayed_end - datetime.timedelta(days=window)
    count = inside.sum()
    frauds = (inside & pl.col("charged").fill_null(False)).sum()
    return [
        count.alias(f"merchant_delayed_txn_count_{window}d"),
        pl.when(count > 0).then(frauds / count).alias(f"merchant_fraud_rate_{window}d"),
    ]
