"""The standard card-fraud benchmark's pure pieces: its 15 features and card precision @ k.

The protocol is the one of the reproducible-ML handbook for card fraud detection (Le Borgne et
al.): a plain classifier on 15 features computed from the raw payments and chargebacks alone,
judged by, among others, the precision of the k cards an investigator would check each day.
Written from the raw tables, independently of Flywheel's feature code, so that
``bench/model_quality.py`` has a yardstick that does not move when Flywheel's features change.

The features of a payment made on day D:

* ``is_weekend``, ``is_night``: the payment falls on a Saturday or Sunday; before 06:00 (UTC).
* per customer, for w in 1, 7, 30 days: ``customer_count_{w}d`` and ``customer_mean_amount_{w}d``,
  the payments and their mean amount in the w days up to and including this payment;
* per terminal (``merchant_id``), for w in 1, 7, 30 days: ``terminal_count_{w}d`` and
  ``terminal_fraud_rate_{w}d`` over the payment days ``[D - delay - w, D - delay)``: the window
  ends one label delay before the payment's day, and a payment of it counts as a fraud only if
  its chargeback was reported before day D. A terminal without payments in the window gets 0
  and 0.
* ``amount``, the raw amount.
"""

import datetime

import polars as pl

TIMESTAMP = "event_timestamp"
WINDOWS_DAYS = (1, 7, 30)
NIGHT_END_HOUR = 6
CUSTOMER_FEATURES = [
    name
    for days in WINDOWS_DAYS
    for name in (f"customer_count_{days}d", f"customer_mean_amount_{days}d")
]
TERMINAL_FEATURES = [
    name
    for days in WINDOWS_DAYS
    for name in (f"terminal_count_{days}d", f"terminal_fraud_rate_{days}d")
]
STANDARD_FEATURES = ["is_weekend", "is_night", *CUSTOMER_FEATURES, *TERMINAL_FEATURES, "amount"]


def history_days(delay_days: int) -> int:
    """Days of payments the features of a day need before it (the widest terminal window)."""
    return delay_days + max(WINDOWS_DAYS)


def standard_features(
    transactions: pl.DataFrame,
    chargebacks: pl.DataFrame,
    days: list[datetime.date],
    delay_days: int,
) -> pl.DataFrame:
    """The 15 standard features of every payment made on ``days``.

    Args:
        transactions: Raw payments (``transaction_id``, ``customer_id``, ``merchant_id``,
            ``amount``, ``event_timestamp``) of ``days`` and of ``history_days(delay_days)``
            days before them; earlier ones only feed the windows.
        chargebacks: Chargebacks (``transaction_id``, ``reported_at``), any report day: each
            payment's features keep only those reported before its day.
        days: The days whose payments get features.
        delay_days: The label delay: the terminal windows end this many days before the day.

    Returns:
        ``transaction_id`` and ``STANDARD_FEATURES``, one row per payment on ``days``, in
        ``transactions``' order by time (ties by ``transaction_id``).
    """
    day = pl.col(TIMESTAMP).dt.date()
    payments = (
        transactions.select("transaction_id", "customer_id", "merchant_id", "amount", TIMESTAMP)
        .sort("customer_id", TIMESTAMP, "transaction_id")
        .with_columns(day=day, _one=pl.lit(1, pl.Int64))
    )
    customers = payments.with_columns(
        **{
            f"customer_count_{w}d": _customer_window(pl.col("_one"), "sum", w) for w in WINDOWS_DAYS
        },
        **{
            f"customer_mean_amount_{w}d": _customer_window(pl.col("amount"), "mean", w)
            for w in WINDOWS_DAYS
        },
    ).filter(pl.col("day").is_in(days))
    terminals = terminal_features(payments, chargebacks, days, delay_days)
    return (
        customers.join(terminals, on=["merchant_id", "day"], how="left")
        .with_columns(
            pl.col(TERMINAL_FEATURES).fill_null(0),
            is_weekend=(pl.col(TIMESTAMP).dt.weekday() >= 6).cast(pl.Int8),
            is_night=(pl.col(TIMESTAMP).dt.hour() < NIGHT_END_HOUR).cast(pl.Int8),
        )
        .sort(TIMESTAMP, "transaction_id")
        .select("transaction_id", *STANDARD_FEATURES)
    )


def terminal_features(
    payments: pl.DataFrame,
    chargebacks: pl.DataFrame,
    days: list[datetime.date],
    delay_days: int,
) -> pl.DataFrame:
    """Per terminal and day of ``days``: its payments and known fraud rate over each window.

    A payment of day d lies in the window of width w of day D when ``1 <= D - delay - d <= w``
    (its age); it is a known fraud there when its chargeback was reported before day D.

    Args:
        payments: ``transaction_id``, ``merchant_id`` and ``day`` of every payment.
        chargebacks: ``transaction_id`` and ``reported_at``.
        days: The feature days.
        delay_days: The label delay.

    Returns:
        ``merchant_id``, ``day`` and ``TERMINAL_FEATURES``, for the terminals with at least one
        payment in their widest window.
    """
    widest = max(WINDOWS_DAYS)
    ages = pl.int_range(1, widest + 1, dtype=pl.Int32).implode()

    def by_feature_day(frame: pl.DataFrame) -> pl.DataFrame:
        """Each row once per feature day whose windows it can fall in, with its age there."""
        return (
            frame.with_columns(age=ages)
            .explode("age")
            .with_columns(feature_day=pl.col("day") + pl.duration(days=pl.col("age") + delay_days))
            .filter(pl.col("feature_day").is_in(days))
        )

    volume = by_feature_day(payments.group_by("merchant_id", "day").agg(payments=pl.len()))
    known = by_feature_day(
        chargebacks.select("transaction_id", "reported_at")
        .unique("transaction_id")
        .join(payments.select("transaction_id", "merchant_id", "day"), on="transaction_id")
    ).filter(pl.col("reported_at").dt.date() < pl.col("feature_day"))
    counts = volume.group_by("merchant_id", "feature_day").agg(
        (pl.col("payments") * (pl.col("age") <= w)).sum().alias(f"terminal_count_{w}d")
        for w in WINDOWS_DAYS
    )
    frauds = known.group_by("merchant_id", "feature_day").agg(
        (pl.col("age") <= w).sum().alias(f"_frauds_{w}d") for w in WINDOWS_DAYS
    )
    return (
        counts.join(frauds, on=["merchant_id", "feature_day"], how="left")
        .with_columns(
            pl.when(pl.col(f"terminal_count_{w}d") > 0)
            .then(pl.col(f"_frauds_{w}d").fill_null(0) / pl.col(f"terminal_count_{w}d"))
            .otherwise(0.0)
            .alias(f"terminal_fraud_rate_{w}d")
            for w in WINDOWS_DAYS
        )
        .rename({"feature_day": "day"})
        .select("merchant_id", "day", *TERMINAL_FEATURES)
    )


def card_precision_at_k(
    day: pl.Series, card: pl.Series, score: pl.Series, fraud: pl.Series, k: int
) -> list[float]:
    """Card precision @ k of each day: the share of its k highest-scoring cards with a fraud.

    A card's score on a day is the highest score of its payments that day, and it is a fraud
    card that day if any of those payments is a fraud. Ties are broken by the card id, so the
    figure is deterministic; a day with fewer than k cards still divides by k.

    Returns:
        One precision per day, in day order.
    """
    cards = (
        pl.DataFrame({"day": day, "card": card, "score": score, "fraud": fraud})
        .group_by("day", "card")
        .agg(pl.col("score").max(), pl.col("fraud").any())
        .sort(["day", "score", "card"], descending=[False, True, False])
        .group_by("day", maintain_order=True)
        .agg(hits=pl.col("fraud").head(k).sum())
    )
    return (cards["hits"] / k).to_list()


def _customer_window(expression: pl.Expr, statistic: str, days: int) -> pl.Expr:
    """``statistic`` of ``expression`` over the customer's ``days`` days up to each payment."""
    method = getattr(expression, f"rolling_{statistic}_by")
    return method(TIMESTAMP, window_size=f"{days}d").over("customer_id")
