"""The customer features of the fraud model as pure polars, free of Dagster and Feast.

These functions write the rows that Feast's feature views read (``feature_repo/``). They run in
the feature assets, in tests and in ``bench/features.py``. The views' columns and these frames
must agree; ``tests/features/test_feature_engineering.py`` holds them to that.

Two shapes, chosen by how fast each signal moves:

- customer behaviour is one row per transaction: the customer's state right after it, so
  velocity over the last hour is exact at every payment. Feast's point-in-time join then hands a
  new transaction the state after the customer's previous one, and the online store holds the
  same row. ``customer_features`` defines these rows from the raw history of 30 days;
  ``customer_features_incremental`` computes the same rows for a new day from that day, the
  three days where its windows' edges fall, and one row per customer, country and day of the
  days between (``customer_daily_activity``), so a day's cost no longer grows with the windows.
- merchant risk is one row per merchant and day (``merchant_risk.py``).
"""

import datetime
from collections.abc import Sequence
from typing import TypeVar

import polars as pl

TIMESTAMP = "event_timestamp"
# The widest customer window; a day's customer rows need this much history before the day.
CUSTOMER_HISTORY = datetime.timedelta(days=30)
HOUR_US = 3_600_000_000
DAY_US = 86_400_000_000
Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)
# Windows of the customer's transaction counts and amount sums: the short ones in microseconds
# (computed from the raw rows of the day and the day before), the long ones in days (also from
# daily activity in the incremental path).
SHORT_WINDOWS = {"1h": HOUR_US, "24h": DAY_US}
LONG_WINDOWS = (7, 30)

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

# One row per customer, country and day: what the long windows and the home country need of a
# whole day. The amounts' spread is kept as the sum of squared deviations from the group's mean
# (M2), which combines across groups without the cancellation of a sum of squares.
CUSTOMER_ACTIVITY_SCHEMA = pl.Schema(
    {
        "customer_id": pl.Int64,
        "country": pl.String,
        "day": pl.Date,
        "transactions": pl.Int64,
        "amount_count": pl.Int64,
        "amount_sum": pl.Float64,
        "amount_m2": pl.Float64,
        "amount_max": pl.Float64,
    }
)


def day_start(day: datetime.date) -> datetime.datetime:
    """Midnight UTC at the start of ``day``."""
    return datetime.datetime.combine(day, datetime.time(), tzinfo=datetime.UTC)


def customer_history_days(days: Sequence[datetime.date]) -> list[datetime.date]:
    """The transaction days that the customer rows of ``days`` are computed from."""
    first = min(days) - CUSTOMER_HISTORY
    return day_range(first, max(days))


def customer_edge_days(day: datetime.date) -> list[datetime.date]:
    """The days of raw transactions ``customer_features_incremental`` reads for ``day``.

    The day itself and the days its windows' edges fall in: the day before (the 1-hour and
    24-hour windows) and the days 7 and 30 days before (the long windows' first, partial day).
    """
    return sorted({day - datetime.timedelta(days=n) for n in (0, 1, *LONG_WINDOWS)})


def customer_activity_days(day: datetime.date) -> list[datetime.date]:
    """The days of ``customer_daily_activity`` the incremental rows of ``day`` read."""
    return day_range(day - CUSTOMER_HISTORY, day - datetime.timedelta(days=1))


def customer_features(transactions: pl.LazyFrame, days: Sequence[datetime.date]) -> pl.DataFrame:
    """The customer's behaviour right after each of their transactions on ``days``.

    The definition of the rows, every window computed from the raw history: the path for many
    days at once (a backfill's benches), and what ``customer_features_incremental`` is held to.

    Args:
        transactions: Validated transactions of ``customer_history_days(days)``; earlier
            history only feeds the windows and gets no rows of its own.
        days: The days to emit rows for.

    Returns:
        One row per transaction on ``days``, ``CUSTOMER_FEATURE_SCHEMA``, ordered by customer
        and time. Windows end at (and include) the transaction; ``home_country`` is taken from
        the 30 days before the transaction's day began, and is null for data without a country.
    """
    ordered = _ordered(transactions)
    amount = pl.col("amount")
    rows = (
        _with_short_windows(ordered)
        .with_columns(
            **{
                f"txn_count_{window}d": _by_customer(_counted(amount), "sum", f"{window}d")
                for window in LONG_WINDOWS
            },
            amount_mean_7d=_by_customer(amount, "mean", "7d"),
            amount_mean_30d=_by_customer(amount, "mean", "30d"),
            amount_std_30d=_by_customer(amount, "std", "30d"),
            amount_max_30d=_by_customer(amount, "max", "30d"),
            day=pl.col(TIMESTAMP).dt.date(),
        )
        .filter(pl.col("day").is_in(list(days)))
    )
    activity = customer_daily_activity(transactions).lazy()
    homes = pl.concat(
        _home_countries(_by_country(_month(activity, day), ["transactions"])).with_columns(
            day=pl.lit(day)
        )
        for day in days
    )
    return _customer_rows(rows.join(homes, on=["customer_id", "day"], how="left"))


def customer_daily_activity(transactions: pl.LazyFrame) -> pl.DataFrame:
    """Each customer's payments per country and day: counts, amount sum, M2 and maximum.

    Args:
        transactions: Validated transactions (any days; a dataset without a country gets one
            null-country row per customer and day).

    Returns:
        ``CUSTOMER_ACTIVITY_SCHEMA``, ordered by day, customer and country.
    """
    has_country = "country" in transactions.collect_schema()
    amount = pl.col("amount")
    return (
        transactions.group_by(
            "customer_id",
            (pl.col("country") if has_country else pl.lit(None, pl.String)).alias("country"),
            day=pl.col(TIMESTAMP).dt.date(),
        )
        .agg(
            transactions=pl.len(),
            amount_count=amount.count(),
            amount_sum=amount.sum(),
            amount_m2=(amount.var(ddof=0) * amount.count()).fill_null(0.0),
            amount_max=amount.max(),
        )
        .select(CUSTOMER_ACTIVITY_SCHEMA.names())
        .cast(CUSTOMER_ACTIVITY_SCHEMA)
        .sort("day", "customer_id", "country", nulls_last=True)
        .collect(engine="streaming")
    )


def customer_features_incremental(
    transactions: pl.LazyFrame, activity: pl.LazyFrame, day: datetime.date
) -> pl.DataFrame:
    """``customer_features(..., [day])`` from the day, its windows' edges and daily activity.

    A window of 7 or 30 days ending at a payment at time-of-day ``t`` is the customer's payments
    of the day up to ``t``, their whole days in between (``activity``) and the payments after
    ``t`` on the window's first day; the three parts' counts, sums, M2 and maxima combine
    exactly (Chan's formula for M2), so the rows equal the definition's up to float rounding.

    Args:
        transactions: Validated transactions of ``customer_edge_days(day)``.
        activity: ``customer_daily_activity`` of ``customer_activity_days(day)``.
        day: The day to emit rows for.

    Returns:
        The rows of ``customer_features(history, [day])``, ordered by customer and time.
    """
    start = day_start(day)
    recent = transactions.filter(pl.col(TIMESTAMP) >= start - datetime.timedelta(days=1))
    rows = (
        _with_short_windows(_ordered(recent))
        .filter(pl.col(TIMESTAMP) >= start)
        .with_columns(time_of_day=_time_of_day(start))
    )
    # The day's rows keep the short windows' line, on which a day-long window is the day so far.
    today = _window_statistics(rows, DAY_US)
    whole_days = _whole_days(activity, rows, day)  # and the home country
    windows = {}
    for days in LONG_WINDOWS:
        parts = [
            today,
            whole_days.select(
                pl.col(f"{name}_{days}").alias(name) for name in ("n", "total", "m2", "max")
            ),
            _first_day_part(transactions, rows, day - datetime.timedelta(days=days)),
        ]
        windows[days] = _combined(parts)
    rows = rows.with_columns(
        txn_count_7d=windows[7]["n"],
        txn_count_30d=windows[30]["n"],
        amount_mean_7d=windows[7]["mean"],
        amount_mean_30d=windows[30]["mean"],
        amount_std_30d=windows[30]["std"],
        amount_max_30d=windows[30]["max"],
    )
    return _customer_rows(rows.with_columns(whole_days["home_country"]))


def _ordered(transactions: pl.LazyFrame) -> pl.DataFrame:
    """The columns the windows need, ordered by customer and time."""
    return (
        transactions.select("customer_id", "merchant_id", "amount", TIMESTAMP)
        .sort("customer_id", TIMESTAMP)
        .collect()
    )


def _with_short_windows(ordered: pl.DataFrame) -> pl.DataFrame:
    """``ordered`` with the 1-hour and 24-hour windows and distinct merchants of each row.

    Also the rows' ``line`` (``_customer_line``), on which a window up to a day long holds one
    customer's payments.
    """
    lined = ordered.with_columns(line=_customer_line(pl.col(TIMESTAMP).dt.epoch("us"), DAY_US))
    distinct = lined.rolling(index_column="line", period=f"{DAY_US}i").agg(
        pl.col("merchant_id").n_unique().alias("distinct_merchants_24h")
    )
    amount = pl.col("amount")
    return lined.with_columns(
        distinct_merchants_24h=distinct["distinct_merchants_24h"].cast(pl.Int64),
        **{
            f"txn_count_{name}": _rolling(_counted(amount), "sum", window)
            for name, window in SHORT_WINDOWS.items()
        },
        amount_sum_1h=_rolling(amount, "sum", HOUR_US),
        amount_sum_24h=_rolling(amount, "sum", DAY_US),
        amount_mean_24h=_rolling(amount, "mean", DAY_US),
        last_transaction_epoch_s=pl.col(TIMESTAMP).dt.epoch("s"),
    )


def _customer_line(position: pl.Expr, window: int) -> pl.Expr:
    """Every customer's payments on one number line, for rolling windows up to ``window`` long.

    On rows ordered by customer and ``position`` (microseconds), a customer's payments keep
    their distances and the next customer starts ``window`` + 1 after the previous one's last
    payment: one rolling pass over the line never mixes two customers, and is several times
    faster than a window per customer (``.over``) with hundreds of thousands of them.
    """
    next_customer = pl.col("customer_id") != pl.col("customer_id").shift()
    return pl.when(next_customer).then(window + 1).otherwise(position.diff()).fill_null(0).cum_sum()


def _window_statistics(rows: Frame, window: int) -> Frame:
    """Per row: count, sum, M2 and maximum of the amounts in the trailing ``window`` of its line."""
    amount = pl.col("amount")
    count = _rolling(_counted(amount), "sum", window)
    return rows.select(
        n=count,
        total=_rolling(amount, "sum", window),
        m2=_rolling(amount, "var", window, ddof=0) * count,
        max=_rolling(amount, "max", window),
    )


def _customer_rows(rows: pl.DataFrame) -> pl.DataFrame:
    return (
        rows.select(CUSTOMER_FEATURE_SCHEMA.names())
        .cast(CUSTOMER_FEATURE_SCHEMA)
        .sort("customer_id", TIMESTAMP, maintain_order=True)
    )


def _counted(expression: pl.Expr) -> pl.Expr:
    """1 where ``expression`` has a value: a rolling sum of it counts like ``rolling_count``."""
    return expression.is_not_null().cast(pl.Int64)


def _time_of_day(start: datetime.datetime) -> pl.Expr:
    """Microseconds since ``start``, the midnight of the row's day."""
    return (pl.col(TIMESTAMP) - start).dt.total_microseconds()


def _whole_days(activity: pl.LazyFrame, rows: pl.DataFrame, day: datetime.date) -> pl.DataFrame:
    """Per row of ``rows`` and long window: the customer's whole days in it before ``day``.

    Columns ``n_7``, ``total_7``, ``m2_7``, ``max_7``, the same for 30 days, and
    ``home_country``. Two streaming passes over the month's activity: each customer's sums per
    country (so their means and home country), then the days' M2 combined around the means
    (Chan's formula), with little more memory than a row per customer.
    """
    count, total = pl.col("amount_count"), pl.col("amount_sum")
    month = _month(activity, day)
    # Each window's share of a day as columns of their own: plain sums stream fastest.
    month = month.with_columns(
        expression
        for w in LONG_WINDOWS
        for inside in [pl.col("day") > day - datetime.timedelta(days=w)]
        for expression in (
            pl.when(inside).then(count).otherwise(0).alias(f"n_{w}"),
            pl.when(inside).then(total).otherwise(0.0).alias(f"total_{w}"),
            pl.when(inside).then(pl.col("amount_max")).alias(f"max_{w}"),
        )
    )
    sums = [f"{name}_{w}" for w in LONG_WINDOWS for name in ("n", "total")]
    by_country = _by_country(month, [*sums, "transactions"])
    means = by_country.group_by("customer_id").agg(pl.col(sums).sum())
    mean = {w: pl.col(f"total_{w}_all") / pl.col(f"n_{w}_all") for w in LONG_WINDOWS}
    per_customer = (
        month.join(means.lazy(), on="customer_id", suffix="_all")
        .with_columns(
            pl.when(pl.col(f"n_{w}") > 0)
            .then(
                pl.col("amount_m2")
                + pl.col(f"n_{w}") * (pl.col(f"total_{w}") / pl.col(f"n_{w}") - mean[w]) ** 2
            )
            .otherwise(0.0)
            .alias(f"m2_{w}")
            for w in LONG_WINDOWS
        )
        .group_by("customer_id")
        .agg(
            pl.col(sums).sum(),
            pl.col(f"m2_{w}" for w in LONG_WINDOWS).sum(),
            pl.col(f"max_{w}" for w in LONG_WINDOWS).max(),
        )
        .collect(engine="streaming")
        .join(_home_countries(by_country), on="customer_id", how="left")
    )
    return rows.select("customer_id").join(
        per_customer, on="customer_id", how="left", maintain_order="left"
    )


def _first_day_part(
    transactions: pl.LazyFrame, rows: pl.DataFrame, first: datetime.date
) -> pl.DataFrame:
    """Per row of ``rows``: the customer's payments on ``first`` later in the day than the row.

    The day's payments and the rows (without an amount) share each customer's line, in time
    counted back from the day's end: a row placed a microsecond before its own time of day ends
    a day-long window that holds exactly the payments after that time.
    """
    start = day_start(first)
    payments = transactions.filter(
        pl.col(TIMESTAMP).is_between(start, day_start(first + datetime.timedelta(days=1)), "left")
    ).select("customer_id", "amount", back=DAY_US - _time_of_day(start))
    queries = rows.lazy().select(
        "customer_id",
        amount=pl.lit(None, pl.Float64),
        back=DAY_US - 1 - pl.col("time_of_day"),
        row=pl.int_range(pl.len(), dtype=pl.Int64),
    )
    both = (
        pl.concat([payments, queries], how="diagonal_relaxed")
        .sort("customer_id", "back")
        .with_columns(line=_customer_line(pl.col("back"), DAY_US))
    )
    statistics = pl.concat([both.select("row"), _window_statistics(both, DAY_US)], how="horizontal")
    return (
        statistics.filter(pl.col("row").is_not_null())
        .sort("row")
        .select("n", "total", "m2", "max")
        .collect()
    )


def _combined(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """Count, mean, sample standard deviation and maximum of the union of aligned ``parts``.

    Each part holds, per row, the count, sum, M2 and maximum of a disjoint set of amounts
    (nulls for none); M2 combines by Chan's formula.
    """
    n = pl.sum_horizontal([pl.col(f"n_{i}").fill_null(0) for i in range(len(parts))])
    total = pl.sum_horizontal([pl.col(f"total_{i}").fill_null(0.0) for i in range(len(parts))])
    wide = pl.concat(
        [part.rename(lambda name, i=i: f"{name}_{i}") for i, part in enumerate(parts)],
        how="horizontal",
    ).with_columns(n=n, mean=pl.when(n > 0).then(total / n))
    m2 = pl.sum_horizontal(
        [
            (
                pl.col(f"m2_{i}")
                + pl.col(f"n_{i}") * (pl.col(f"total_{i}") / pl.col(f"n_{i}") - pl.col("mean")) ** 2
            )
            .fill_null(0.0)
            .fill_nan(0.0)
            for i in range(len(parts))
        ]
    )
    return wide.select(
        "n",
        "mean",
        std=pl.when(pl.col("n") > 1).then((m2 / (pl.col("n") - 1)).clip(lower_bound=0.0).sqrt()),
        max=pl.max_horizontal([pl.col(f"max_{i}") for i in range(len(parts))]),
    )


def _rolling(expression: pl.Expr, statistic: str, window: int, **options: int) -> pl.Expr:
    """``statistic`` of ``expression`` over the trailing ``window`` microseconds of the line."""
    method = getattr(expression, f"rolling_{statistic}_by")
    return method("line", window_size=f"{window}i", **options)


def _by_customer(expression: pl.Expr, statistic: str, window: str) -> pl.Expr:
    """``statistic`` of ``expression`` over the customer's trailing ``window`` (a duration)."""
    method = getattr(expression, f"rolling_{statistic}_by")
    return method(TIMESTAMP, window_size=window).over("customer_id")


def _month(activity: pl.LazyFrame, day: datetime.date) -> pl.LazyFrame:
    """The rows of daily ``activity`` of the 30 days before ``day``."""
    return activity.filter(pl.col("day").is_between(day - CUSTOMER_HISTORY, day, "left"))


def _by_country(activity: pl.LazyFrame, sums: list[str]) -> pl.DataFrame:
    """The sums of the ``sums`` columns of ``activity`` per customer and country."""
    return (
        # Grouped by the country's category, not its text: a third faster over a month.
        activity.group_by("customer_id", pl.col("country").cast(pl.Categorical))
        .agg(pl.col(sums).sum())
        .with_columns(pl.col("country").cast(pl.String))
        .collect(engine="streaming")
    )


def _home_countries(by_country: pl.DataFrame) -> pl.DataFrame:
    """Per customer: the country of most of the ``transactions`` counted per country.

    Ties go to the alphabetically first country, so the answer is deterministic.
    """
    return (
        by_country.sort(["customer_id", "transactions", "country"], descending=[False, True, False])
        .group_by("customer_id", maintain_order=True)
        .agg(home_country=pl.col("country").first())
    )


def day_range(first: datetime.date, last: datetime.date) -> list[datetime.date]:
    """Every day from ``first`` to ``last``, both included."""
    return [first + datetime.timedelta(days=n) for n in range((last - first).days + 1)]
