"""Which transactions a training set may use, and their labels, free of Dagster and Feast.

Labels respect their delay: only transactions whose label window has closed are used, so a
recent transaction is never called legitimate just because its chargeback has not arrived yet.
"""

import datetime

import polars as pl

LABEL = "is_fraud"
# Feature rows stamped at a transaction describe the customer after it; asking just before the
# transaction keeps its own amount out of its features.
JUST_BEFORE = datetime.timedelta(microseconds=1)


def matured_days(
    last_day: str, days: int, now: datetime.datetime, maturity_days: int
) -> list[datetime.date]:
    """The ``days`` transaction days up to ``last_day`` (empty: the latest matured one).

    Raises:
        ValueError: ``last_day`` is a day whose labels are still arriving.
    """
    latest = (now - datetime.timedelta(days=maturity_days + 1)).date()
    last = datetime.date.fromisoformat(last_day) if last_day else latest
    if last > latest:
        raise ValueError(
            f"last_day {last} is too recent: its labels are complete only "
            f"{maturity_days} days after it (label_policy.maturity_days); the latest matured "
            f"day is {latest}"
        )
    return [last - datetime.timedelta(days=back) for back in range(days - 1, -1, -1)]


def labelled_transactions(transactions: pl.LazyFrame, chargebacks: pl.LazyFrame) -> pl.DataFrame:
    """Entity rows for Feast: keys, request fields, the as-of instant and the label."""
    charged = chargebacks.select("transaction_id").unique()
    # Optional roles the data does not have stay null: is_foreign is then null, and evaluation
    # has no slice by them.
    present = transactions.collect_schema()
    optional = {
        name: pl.col(name) if name in present else pl.lit(None, dtype=pl.String)
        for name in ("country", "channel")
    }
    return (
        transactions.join(charged.with_columns(charged=True), on="transaction_id", how="left")
        .select(
            "transaction_id",
            "customer_id",
            "merchant_id",
            "amount",
            # country feeds is_foreign; channel is not a model input: evaluation slices by it.
            **optional,
            transaction_epoch_s=pl.col("event_timestamp").dt.epoch("s"),
            event_timestamp=pl.col("event_timestamp") - JUST_BEFORE,
            **{LABEL: pl.col("charged").fill_null(False)},
        )
        .collect()
    )
