"""The simulated lake the feature and training benchmarks build, as the assets would build it.

Simulated payments and chargebacks written one parquet per day as the ingestion assets write
them, both feature tables computed over all days and written one parquet per day (the files the
Feast views read), and the entity rows of a training set among the days whose labels have
matured. ``bench/features.py`` times these steps; ``bench/training.py`` uses them to build the
training set it trains on.
"""

import datetime
import time
from pathlib import Path
from typing import Any

import polars as pl

from helpers.memory import run_measured
from helpers.output import feast_output, progress
from platform_assets.features import engineering as fe
from platform_assets.features import merchant_risk as mr
from platform_assets.features.labelling import labelled_transactions
from resources.feature_store import FeatureStoreResource
from resources.sources.simulator import CardPaymentsSimulator

SEED = 7
MATURITY_DAYS = 7  # labels arrive 1..7 days after the transaction
RISK_WINDOW_DAYS = 14
LABEL_DELAY_DAYS = 3  # most labels are in within three days


def calendar(first: datetime.date, count: int) -> list[datetime.date]:
    """``count`` consecutive days from ``first``."""
    return [first + datetime.timedelta(days=n) for n in range(count)]


def generate(
    lake: Path,
    rows_per_day: int,
    days: list[datetime.date],
    max_label_delay_days: int = MATURITY_DAYS,
    report_days_after: int = 0,
) -> dict[str, Any]:
    """Write the simulated days into the lake as the ingestion assets do, one parquet per day.

    ``validated_transactions/<day>.parquet`` for every day and ``fraud_labels/<day>.parquet`` for
    the chargebacks reported on every day after the first (the labels of the transactions of
    the days before the first day are reported too, as a real feed would).

    Args:
        lake: The lake's folder (created).
        rows_per_day: The simulator's average daily volume.
        days: Consecutive transaction days.
        max_label_delay_days: Chargebacks arrive 1..this many days after the payment; by default
            ``MATURITY_DAYS``, so a day's labels are complete when they have matured.
        report_days_after: Also write the chargebacks reported on this many days after the last
            day (no transactions on them): the labels the last days' payments receive later.

    Returns:
        Seconds, transactions and chargebacks written.
    """
    simulator = CardPaymentsSimulator(
        seed=SEED, rows_per_day=rows_per_day, max_label_delay_days=max_label_delay_days
    )
    (lake / "validated_transactions").mkdir(parents=True)
    (lake / "fraud_labels").mkdir(parents=True)
    start = time.perf_counter()
    transactions = chargebacks = 0
    for day in days:
        frame = simulator.day(day).transactions
        frame.write_parquet(lake / "validated_transactions" / f"{day}.parquet", statistics=True)
        transactions += frame.height
        del frame
        if day > days[0]:
            reports = simulator.chargebacks(day)
            reports.write_parquet(lake / "fraud_labels" / f"{day}.parquet", statistics=True)
            chargebacks += reports.height
        progress(f"  generated {day} ({transactions:,} transactions so far)", end=False)
    for day in calendar(days[-1] + datetime.timedelta(days=1), report_days_after):
        reports = simulator.chargebacks(day)
        reports.write_parquet(lake / "fraud_labels" / f"{day}.parquet", statistics=True)
        chargebacks += reports.height
    return {
        "seconds": time.perf_counter() - start,
        "transactions": transactions,
        "chargebacks": chargebacks,
    }


def scan(lake: Path, dataset: str, days: list[datetime.date] | None = None) -> pl.LazyFrame:
    """The parquet files of ``dataset`` in the lake: every day, or only ``days``."""
    if days is None:
        return pl.scan_parquet(lake / dataset / "*.parquet")
    return pl.scan_parquet([lake / dataset / f"{day}.parquet" for day in days])


def _write_per_day(frame: pl.DataFrame, folder: Path, day: pl.Expr) -> int:
    """Write ``frame`` as one parquet per day of ``day``; return the number of files."""
    folder.mkdir(parents=True)
    parts = frame.with_columns(_day=day).partition_by("_day", as_dict=True, include_key=False)
    for (key,), part in parts.items():
        part.write_parquet(folder / f"{key}.parquet", statistics=True)
    return len(parts)


def _table_figures(frame: pl.DataFrame, key: str) -> dict[str, int]:
    """Rows and entities of a feature table."""
    return {"rows": frame.height, "entities": frame[key].n_unique()}


def compute_features(
    lake: Path, days: list[datetime.date], label_delay_days: int = LABEL_DELAY_DAYS
) -> dict[str, Any]:
    """Compute both feature tables over all ``days`` in one call each, and write them per day.

    The merchant fraud rates are taken ``label_delay_days`` back (``LabelPolicy.label_delay_days``).

    Returns:
        Per table: seconds, rows, entities, RSS before and peak, write seconds and files; for
        merchants also the rows with matured labels.
    """
    transactions = scan(lake, "validated_transactions")
    chargebacks = scan(lake, "fraud_labels")
    out: dict[str, Any] = {}

    progress("customer_features: all days in one call")
    customers, out["customer"] = run_measured(lambda: fe.customer_features(transactions, days))
    out["customer"].update(_table_figures(customers, "customer_id"))
    start = time.perf_counter()
    out["customer"]["files"] = _write_per_day(
        customers, lake / "customer_features", pl.col(fe.TIMESTAMP).dt.date()
    )
    out["customer"]["write_s"] = time.perf_counter() - start
    del customers

    progress("merchant_features: all days in one call")
    merchants, out["merchant"] = run_measured(
        lambda: mr.merchant_features(
            transactions, chargebacks, days, MATURITY_DAYS, RISK_WINDOW_DAYS, label_delay_days
        )
    )
    out["merchant"].update(
        _table_figures(merchants, "merchant_id"),
        with_matured_labels=merchants.filter(pl.col("merchant_matured_txn_count") > 0).height,
    )
    # A merchant row is stamped at the end of its day: its day is that instant minus 1 us.
    start = time.perf_counter()
    out["merchant"]["files"] = _write_per_day(
        merchants,
        lake / "merchant_features",
        (pl.col(fe.TIMESTAMP) - datetime.timedelta(microseconds=1)).dt.date(),
    )
    out["merchant"]["write_s"] = time.perf_counter() - start
    return out


def historical_entities(lake: Path, days: list[datetime.date], rows: int) -> pl.DataFrame:
    """The latest ``rows`` labelled transactions among the days whose labels have matured.

    With labels reported up to the end of the last day, a day is matured when its
    ``MATURITY_DAYS`` days of reports are all in: the last matured day is the last day minus
    ``MATURITY_DAYS``. Days are taken backwards from it until there are enough transactions.
    """
    last_matured = days[-1] - datetime.timedelta(days=MATURITY_DAYS)
    chosen: list[datetime.date] = []
    available = 0
    for back in range((last_matured - days[0]).days + 1):
        day = last_matured - datetime.timedelta(days=back)
        chosen.insert(0, day)
        available += (
            pl.scan_parquet(lake / "validated_transactions" / f"{day}.parquet")
            .select(pl.len())
            .collect()
            .item()
        )
        if available >= rows:
            break
    entities = labelled_transactions(
        scan(lake, "validated_transactions", chosen), scan(lake, "fraud_labels")
    )
    return entities.sort(fe.TIMESTAMP, "transaction_id").tail(rows)


def build_training_set(
    root: Path, first: datetime.date, rows_per_day: int, days: int, rows: int
) -> tuple[pl.DataFrame, FeatureStoreResource, Path, list[datetime.date]]:
    """The latest ``rows`` labelled payments with their point-in-time features.

    Simulated payments written into a lake as the ingestion assets write them, both feature
    tables computed per day, the Feast repository applied (SQLite) and the rows joined point in
    time (``engine="polars"``), as ``training_set`` builds them.

    Returns:
        The training set ordered by time, the applied feature store, the lake and the days.
    """
    lake = root / "source-lake"
    calendar_days = calendar(first, days)
    progress(f"simulating {days} days x {rows_per_day:,} payments and their features")
    generate(lake, rows_per_day, calendar_days)
    compute_features(lake, calendar_days)
    feature_store = FeatureStoreResource(lake_root=str(lake), state_dir=str(root / "feast"))
    with feast_output():
        feature_store.apply()
    entities = historical_entities(lake, calendar_days, rows)
    progress(f"point-in-time join of {entities.height:,} rows")
    frame = feature_store.historical_features(entities, engine="polars")
    return frame.sort(fe.TIMESTAMP, "transaction_id"), feature_store, lake, calendar_days


def online_requests(lake: Path, day: datetime.date, count: int) -> list[dict[str, Any]]:
    """``count`` random transactions of ``day`` as online requests: keys and request fields.

    The transaction is scored at the materialization end, the instant the online store is at.
    """
    scored_at = int((fe.day_start(day) + datetime.timedelta(days=1)).timestamp())
    transactions = pl.read_parquet(
        lake / "validated_transactions" / f"{day}.parquet",
        columns=["customer_id", "merchant_id", "amount", "country"],
    )
    rows = transactions.sample(count, with_replacement=count > transactions.height, seed=SEED)
    return rows.with_columns(transaction_epoch_s=pl.lit(scored_at, pl.Int64)).to_dicts()
