"""The features of the fraud model as pure polars, free of Dagster and Feast.

These functions write the rows that Feast's feature views read (``feature_repo/``). They run in
the feature assets, in tests and in ``bench/features.py``. The views' columns and these frames
must agree; ``tests/features/test_feature_engineering.py`` holds them to that.

Two shapes, chosen by how fast each signal moves:

- customer behaviour is one row per transaction: the customer's state right after it, so
  velocity over the last hour is exact at every payment. Feast's point-in-time join then hands a
  new transaction the state after the customer's previous one, and the online store holds the
  same row.
- merchant risk is one row per merchant and day, stamped at the end of the day. Its chargeback
  rate counts only transactions whose labels have matured, since a young transaction without a
  chargeback is not yet known to be legitimate. A terminal compromised for a few weeks would be
  over before its matured rate moved, so its fraud rates over the last 1, 7 and 30 days are also
  taken over the payments of the windows ending one label delay ago (most of their frauds are
  known by then), counting the frauds reported so far.
"""

import datetime
from collections.abc import Sequence

import polars as pl

TIMESTAMP = "event_timestamp"
# The widest customer window; a day's customer rows need this much history before the day.
CUSTOMER_HISTORY = datetime.timedelta(days=30)
# Windows of the customer's transaction counts and amount sums, as polars durations.
COUNT_WINDOWS = ("1h", "24h", "7d", "30d")
MERCHANT_VOLUME_WINDOW = datetime.timedelta(days=7)
# Windows (days) of the merchant's fraud rates taken one label delay ago.
DELAYED_RISK_WINDOWS = (1, 7, 30)

CUSTOMER_FEATURE_SCHEMA = pl.Schema(
    {
        "customer_id": pl.Int64,
        TIMESTAMP: pl.Datetime("us", "UTC"),
        "txn_count_1h": pl.Int64,
        "txn_count_24h": pl.Int64,
        "txn_count_7d": pl.Int64,
        "txn_count_30d": pl.Int64,
        "amount_sum_1h": pl.Float64,
        "amount_sum_24h": pl.Float64,
        "amount_mean_24h": pl.Float64,
        "amount_mean_7d": pl.Float64,
        "amount_mean_30d": pl.Float64,
        "amount_std_30d": pl.Float64,
        "amount_max_30d": pl.Float64,
        "distinct_merchants_24h": pl.Int64,
        "home_country": pl.String,
        "last_transaction_epoch_s": pl.Int64,
    }
)

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


def day_start(day: datetime.date) -> datetime.datetime:
    """Midnight UTC at the start of ``day``."""
    return datetime.datetime.combine(day, datetime.time(), tzinfo=datetime.UTC)


def customer_history_days(days: Sequence[datetime.date]) -> list[datetime.date]:
    """The transaction days that the customer rows of ``days`` are computed from."""
    first = min(days) - CUSTOMER_HISTORY
    return _day_range(first, max(days))


def merchant_history_span(maturity_days: int, risk_window_days: int, delay_days: int) -> int:
    """How many days before its own day a merchant row's windows reach back."""
    return max(maturity_days + risk_window_days, delay_days + max(DELAYED_RISK_WINDOWS)) - 1


def merchant_history_days(
    days: Sequence[datetime.date], maturity_days: int, risk_window_days: int, delay_days: int
) -> list[datetime.date]:
    """The transaction days that the merchant rows of ``days`` are computed from."""
    span = merchant_history_span(maturity_days, risk_window_days, delay_days)
    return _day_range(min(days) - datetime.timedelta(days=span), max(days))


def customer_features(transactions: pl.LazyFrame, days: Sequence[datetime.date]) -> pl.DataFrame:
    """The customer's behaviour right after each of their transactions on ``days``.

    Args:
        transactions: Validated transactions of ``customer_history_days(days)``; earlier
            history only feeds the windows and gets no rows of its own.
        days: The days to emit rows for.

    Returns:
        One row per transaction on ``days``, ``CUSTOMER_FEATURE_SCHEMA``, ordered by customer
        and time. Windows end at (and include) the transaction; ``home_country`` is taken from
        the 30 days before the transaction's day began, and is null for data without a country.
    """
    has_country = "country" in transactions.collect_schema()
    country = pl.col("country") if has_country else pl.lit(None, dtype=pl.String)
    ordered = (
        transactions.select(
            "customer_id", "merchant_id", "amount", country.alias("country"), TIMESTAMP
        )
        .sort("customer_id", TIMESTAMP)
        .collect()
    )
    by_customer = ordered.rolling(index_column=TIMESTAMP, period="24h", group_by="customer_id")
    distinct = by_customer.agg(pl.col("merchant_id").n_unique().alias("distinct_merchants_24h"))

    amount = pl.col("amount")
    rows = (
        ordered.with_columns(
            distinct_merchants_24h=distinct["distinct_merchants_24h"].cast(pl.Int64),
            **{
                f"txn_count_{window}": _rolling(amount.is_not_null().cast(pl.Int64), "sum", window)
                for window in COUNT_WINDOWS
            },
            amount_sum_1h=_rolling(amount, "sum", "1h"),
            amount_sum_24h=_rolling(amount, "sum", "24h"),
            amount_mean_24h=_rolling(amount, "mean", "24h"),
            amount_mean_7d=_rolling(amount, "mean", "7d"),
            amount_mean_30d=_rolling(amount, "mean", "30d"),
            amount_std_30d=_rolling(amount, "std", "30d"),
            amount_max_30d=_rolling(amount, "max", "30d"),
            last_transaction_epoch_s=pl.col(TIMESTAMP).dt.epoch("s"),
            day=pl.col(TIMESTAMP).dt.date(),
        )
        .filter(pl.col("day").is_in(list(days)))
        .join(_home_countries(ordered, days), on=["customer_id", "day"], how="left")
    )
    return rows.select(CUSTOMER_FEATURE_SCHEMA.names()).cast(CUSTOMER_FEATURE_SCHEMA)


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


def _rolling(expression: pl.Expr, statistic: str, window: str) -> pl.Expr:
    """``statistic`` of ``expression`` over the customer's trailing ``window``, per row."""
    method = getattr(expression, f"rolling_{statistic}_by")
    return method(TIMESTAMP, window_size=window).over("customer_id")


def _home_countries(ordered: pl.DataFrame, days: Sequence[datetime.date]) -> pl.DataFrame:
    """Per customer and day: the country of most of their transactions in the 30 days before.

    Ties go to the alphabetically first country, so the answer is deterministic.
    """
    daily = ordered.group_by("customer_id", "country", day=pl.col(TIMESTAMP).dt.date()).agg(
        transactions=pl.len()
    )
    per_day = [
        daily.filter(pl.col("day").is_between(day - CUSTOMER_HISTORY, day, "left"))
        .group_by("customer_id", "country")
        .agg(pl.col("transactions").sum())
        .with_columns(day=pl.lit(day))
        for day in days
    ]
    return (
        pl.concat(per_day)
        .sort(
            ["customer_id", "day", "transactions", "country"],
            descending=[False, False, True, False],
        )
        .group_by("customer_id", "day", maintain_order=True)
        .agg(home_country=pl.col("country").first())
    )


def _day_range(first: datetime.date, last: datetime.date) -> list[datetime.date]:
    return [first + datetime.timedelta(days=n) for n in range((last - first).days + 1)]
