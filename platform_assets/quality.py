"""The ingestion quality gate as pure functions, free of Dagster.

The transaction contract, row splitting, anomaly measures and distribution drift against an
accepted baseline. Kept free of Dagster so the same code runs in asset checks, tests and
``bench/ingestion.py``, and so a rule is defined once. Everything is polars and vectorised:
a day of ten million rows is judged in a few seconds.
"""

import datetime
import math
from dataclasses import dataclass
from typing import Any

import pandera.polars as pa
import polars as pl
from pandera.engines import polars_engine

from resources.simulator import (
    CHANNELS,
    CHARGEBACK_REASONS,
    COUNTRIES,
    CURRENCIES,
    MAX_AMOUNT,
    MERCHANT_CATEGORIES,
    MIN_AMOUNT,
)

NUMERIC_DRIFT_COLUMNS: tuple[str, ...] = ("amount",)
CATEGORICAL_DRIFT_COLUMNS: tuple[str, ...] = ("currency", "merchant_category", "channel", "country")
# Hour of day is derived, not stored; it drifts when the business's rhythm changes.
DERIVED_NUMERIC_COLUMNS: dict[str, pl.Expr] = {
    "event_hour": pl.col("event_timestamp").dt.hour().cast(pl.Float64)
}
_DECILES = [i / 10 for i in range(1, 10)]
# PSI is undefined for empty bins; this floor treats "never seen" as "very rare".
_PSI_FLOOR = 1e-4
# The rule name a quarantined row carries when it repeats an earlier transaction id.
FIRST_OCCURRENCE_RULE = "repeats an earlier transaction_id"


def _first_occurrence(data: pa.PolarsData) -> pl.LazyFrame:
    """Keep the first copy of a transaction id; later copies are the duplicates."""
    return data.lazyframe.select(pl.col(data.key).is_first_distinct())


def _within_day(day: datetime.date) -> pa.Check:
    """Timestamps on the partition's UTC day: a row of another day belongs to another batch."""
    start = datetime.datetime.combine(day, datetime.time(), tzinfo=datetime.UTC)
    end = start + datetime.timedelta(days=1) - datetime.timedelta(microseconds=1)
    return pa.Check.in_range(start, end)


_UTC_TIMESTAMP = polars_engine.DateTime(time_zone="UTC", time_unit="us")


def transaction_schema(day: datetime.date | None = None) -> pa.DataFrameSchema:
    """The data contract of the transactions feed, optionally bound to one business day.

    Args:
        day: When given, every ``event_timestamp`` must fall on this UTC day.

    Returns:
        A strict pandera (polars) schema: exact columns and types, no nulls, ranges and
        allowed values, and each ``transaction_id`` at most once.
    """
    return pa.DataFrameSchema(
        {
            "transaction_id": pa.Column(
                pl.Int64,
                checks=[
                    pa.Check.ge(1),
                    pa.Check(_first_occurrence, name="unique", error=FIRST_OCCURRENCE_RULE),
                ],
            ),
            "customer_id": pa.Column(pl.Int64, checks=pa.Check.ge(1)),
            "merchant_id": pa.Column(pl.Int64, checks=pa.Check.ge(1)),
            "amount": pa.Column(pl.Float64, checks=pa.Check.in_range(MIN_AMOUNT, MAX_AMOUNT)),
            "currency": pa.Column(pl.String, checks=pa.Check.isin(CURRENCIES)),
            "merchant_category": pa.Column(pl.String, checks=pa.Check.isin(MERCHANT_CATEGORIES)),
            "channel": pa.Column(pl.String, checks=pa.Check.isin(CHANNELS)),
            "country": pa.Column(pl.String, checks=pa.Check.isin(COUNTRIES)),
            "event_timestamp": pa.Column(_UTC_TIMESTAMP, checks=[_within_day(day)] if day else []),
        },
        name="transactions",
        strict=True,
        ordered=False,
    )


def _reported_after_transaction(data: pa.PolarsData) -> pl.LazyFrame:
    return data.lazyframe.select(pl.col("reported_at") >= pl.col("transaction_timestamp"))


def chargeback_schema(day: datetime.date | None = None) -> pa.DataFrameSchema:
    """The data contract of the chargebacks (fraud labels) feed, optionally bound to a report day.

    A label must name a transaction once, come after it, and give a known reason; a label that
    does not is unusable for training.
    """
    return pa.DataFrameSchema(
        {
            "transaction_id": pa.Column(pl.Int64, checks=pa.Check.ge(1), unique=True),
            "customer_id": pa.Column(pl.Int64, checks=pa.Check.ge(1)),
            "transaction_timestamp": pa.Column(_UTC_TIMESTAMP),
            "reported_at": pa.Column(_UTC_TIMESTAMP, checks=[_within_day(day)] if day else []),
            "reason": pa.Column(pl.String, checks=pa.Check.isin(CHARGEBACK_REASONS)),
        },
        checks=[pa.Check(_reported_after_transaction, name="reported_after_transaction")],
        name="chargebacks",
        strict=True,
        ordered=False,
    )


@dataclass(frozen=True)
class ContractResult:
    """What the contract found in one batch.

    Attributes:
        rows: Rows in the batch.
        schema_failures: Batch-level failures (missing or extra column, wrong type): columns
            ``column``, ``check``, ``failure_case``. Any of them makes the batch unusable.
        row_failures: One row per failing row: ``source_row`` (position in the batch) and
            ``failed_rules`` (``column: rule`` joined by ``; ``), sorted by position.
        failure_cases: Every failure pandera reported, for the readable metadata table.
    """

    rows: int
    schema_failures: pl.DataFrame
    row_failures: pl.DataFrame
    failure_cases: pl.DataFrame

    @property
    def bad_rows(self) -> int:
        """Rows that failed at least one rule."""
        return self.row_failures.height

    @property
    def bad_row_share(self) -> float:
        """Share of the batch that failed at least one rule."""
        return self.bad_rows / self.rows if self.rows else 0.0


def validate_transactions(frame: pl.DataFrame, day: datetime.date | None = None) -> ContractResult:
    """Check a transactions batch against its contract."""
    return validate(frame, transaction_schema(day))


def validate_chargebacks(frame: pl.DataFrame, day: datetime.date | None = None) -> ContractResult:
    """Check a chargebacks batch against its contract."""
    return validate(frame, chargeback_schema(day))


def validate(frame: pl.DataFrame, schema: pa.DataFrameSchema) -> ContractResult:
    """Check a batch against a contract, collecting every failure rather than the first."""
    empty_cases = pl.DataFrame(
        schema={
            "column": pl.String,
            "check": pl.String,
            "failure_case": pl.String,
            "index": pl.Int64,
        }
    )
    try:
        schema.validate(frame, lazy=True)
        cases = empty_cases
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases.select(
            pl.col("column").fill_null(pl.lit("<table>")),
            pl.col("check").cast(pl.String),
            pl.col("failure_case").cast(pl.String),
            pl.col("index").cast(pl.Int64),
        )
    row_failures = (
        cases.filter(pl.col("index").is_not_null())
        .with_columns(rule=pl.format("{}: {}", "column", "check"))
        .group_by("index")
        .agg(pl.col("rule").unique().sort().str.join("; ").alias("failed_rules"))
        .select(pl.col("index").cast(pl.get_index_type()).alias("source_row"), "failed_rules")
        .sort("source_row")
    )
    return ContractResult(
        rows=frame.height,
        schema_failures=cases.filter(pl.col("index").is_null()).drop("index"),
        row_failures=row_failures,
        failure_cases=cases,
    )


def split_rows(frame: pl.DataFrame, result: ContractResult) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split a batch into the rows that passed and the quarantined ones, losing none.

    The quarantine keeps each rejected row exactly as delivered, plus ``source_row`` (its
    position in the batch, for replay) and ``failed_rules``.

    Raises:
        ValueError: the batch fails the contract at schema level, so no row can be trusted.
    """
    if result.schema_failures.height:
        problems = "; ".join(
            f"{r['column']}: {r['check']} ({r['failure_case']})"
            for r in result.schema_failures.head(5).iter_rows(named=True)
        )
        raise ValueError(f"the batch breaks the transaction contract at schema level: {problems}")
    # A gather and a filter by row mask copy each row once; a join on a row index would copy
    # the whole day again and, at ten million rows, more than double the peak memory.
    bad_rows = result.row_failures["source_row"]
    quarantined = pl.concat(
        [
            result.row_failures.select("source_row"),
            frame[bad_rows],
            result.row_failures.drop("source_row"),
        ],
        how="horizontal",
    )
    valid = frame.filter(~pl.int_range(pl.len()).is_in(bad_rows.cast(pl.Int64).implode()))
    if valid.height + quarantined.height != frame.height:
        raise AssertionError("row split does not reconcile with the batch")  # never expected
    return valid, quarantined


def failure_summary(result: ContractResult) -> pl.DataFrame:
    """Failures per column and rule, with counts and up to three example values."""
    return (
        result.failure_cases.group_by("column", "check")
        .agg(
            pl.len().alias("failures"),
            pl.col("failure_case")
            .drop_nulls()
            .unique()
            .sort()
            .head(3)
            .str.join(", ")
            .alias("examples"),
            pl.col("index")
            .drop_nulls()
            .sort()
            .head(3)
            .cast(pl.String)
            .str.join(", ")
            .alias("example_rows"),
        )
        .sort("failures", "column", descending=[True, False])
    )


def to_markdown(frame: pl.DataFrame, limit: int = 20) -> str:
    """A small frame as a markdown table for Dagster metadata (truncated to ``limit`` rows)."""
    if frame.is_empty():
        return "_none_"
    shown = frame.head(limit)
    lines = [
        "| " + " | ".join(shown.columns) + " |",
        "|" + "---|" * len(shown.columns),
    ]
    for row in shown.iter_rows():
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if frame.height > limit:
        lines.append(f"\n_{frame.height - limit} more rows not shown_")
    return "\n".join(lines)


# Anomalies -----------------------------------------------------------------------------------


def null_rates(frame: pl.DataFrame) -> dict[str, float]:
    """Share of nulls per column."""
    if frame.is_empty():
        return dict.fromkeys(frame.columns, 0.0)
    counts = frame.null_count().row(0, named=True)
    return {column: count / frame.height for column, count in counts.items()}


def duplicate_rate(frame: pl.DataFrame, key: str = "transaction_id") -> float:
    """Share of rows whose key repeats an earlier row's."""
    if frame.is_empty() or key not in frame.columns:
        return 0.0
    return 1 - frame[key].n_unique() / frame.height


def volume_ratio(rows: int, history: list[int]) -> float | None:
    """A day's rows over the median of the history, or None without history."""
    if not history:
        return None
    ordered = sorted(history)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return rows / median if median else None


# Baseline and drift --------------------------------------------------------------------------


def drift_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """The columns drift is measured on, derived columns included, where present."""
    present = [c for c in NUMERIC_DRIFT_COLUMNS + CATEGORICAL_DRIFT_COLUMNS if c in frame.columns]
    derived = [
        expr.alias(name)
        for name, expr in DERIVED_NUMERIC_COLUMNS.items()
        if "event_timestamp" in frame.columns
    ]
    return frame.select(*present, *derived)


def _numeric_columns(frame: pl.DataFrame) -> list[str]:
    names = list(NUMERIC_DRIFT_COLUMNS) + list(DERIVED_NUMERIC_COLUMNS)
    return [c for c in names if c in frame.columns]


def _categorical_columns(frame: pl.DataFrame) -> list[str]:
    return [c for c in CATEGORICAL_DRIFT_COLUMNS if c in frame.columns]


def _bin_shares(values: pl.Series, edges: list[float]) -> list[float]:
    """Share of non-null values in each of the ``len(edges) + 1`` bins cut at ``edges``."""
    values = values.drop_nulls()
    if values.is_empty():
        return [0.0] * (len(edges) + 1)
    # On sorted data, search_sorted gives the count of values <= each edge; differences of
    # those counts are the per-bin counts.
    ordered = values.sort()
    cuts = ordered.search_sorted(pl.Series(edges, dtype=values.dtype), side="right").to_list()
    bounds = [0, *cuts, ordered.len()]
    return [(bounds[i + 1] - bounds[i]) / ordered.len() for i in range(len(bounds) - 1)]


def build_profile(frame: pl.DataFrame, partitions: list[str]) -> dict[str, Any]:
    """The baseline profile of accepted days: decile bins, category shares, null rates, volume.

    Args:
        frame: Rows that passed the contract, from the accepted days.
        partitions: The days the rows come from, recorded so the baseline says what it is.
    """
    drift = drift_frame(frame)
    numeric = {}
    for column in _numeric_columns(drift):
        series = drift[column].drop_nulls()
        edges = sorted(set(series.quantile(q, "linear") for q in _DECILES))  # type: ignore[arg-type]
        numeric[column] = {"edges": edges, "shares": _bin_shares(series, edges)}
    categorical = {}
    for column in _categorical_columns(drift):
        counts = drift[column].drop_nulls().value_counts(normalize=True, name="share")
        categorical[column] = dict(
            zip(counts[column].to_list(), counts["share"].to_list(), strict=True)
        )
    return {
        "partitions": sorted(partitions),
        "rows": frame.height,
        "rows_per_day": frame.height / max(len(partitions), 1),
        "null_rates": null_rates(frame),
        "numeric": numeric,
        "categorical": categorical,
    }


def psi(expected: list[float], actual: list[float]) -> float:
    """Population stability index between two share vectors over the same bins."""
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, _PSI_FLOOR), max(a, _PSI_FLOOR)
        total += (a - e) * math.log(a / e)
    return total


def distribution_drift(
    frame: pl.DataFrame, profile: dict[str, Any], warn: float, halt: float
) -> pl.DataFrame:
    """PSI per column of a batch against the baseline profile, with a verdict per column.

    Numeric columns are binned on the baseline's deciles; categorical ones compare category
    shares, a category unseen in the baseline counting as a new bin. Columns missing from the
    batch are reported with a null PSI (the contract check owns that failure).

    Returns:
        Columns ``column``, ``kind``, ``psi``, ``verdict`` (ok, warn, halt or missing),
        sorted by PSI, largest first.
    """
    drift = drift_frame(frame)
    rows: list[dict[str, Any]] = []
    for column, spec in profile["numeric"].items():
        value = (
            psi(spec["shares"], _bin_shares(drift[column], spec["edges"]))
            if column in drift.columns
            else None
        )
        rows.append({"column": column, "kind": "numeric", "psi": value})
    for column, expected in profile["categorical"].items():
        value = None
        if column in drift.columns:
            counts = drift[column].drop_nulls().value_counts(normalize=True, name="share")
            actual = dict(zip(counts[column].to_list(), counts["share"].to_list(), strict=True))
            categories = sorted(set(expected) | set(actual))
            value = psi(
                [expected.get(c, 0.0) for c in categories], [actual.get(c, 0.0) for c in categories]
            )
        rows.append({"column": column, "kind": "categorical", "psi": value})

    def verdict(value: float | None) -> str:
        if value is None:
            return "missing"
        return "halt" if value >= halt else "warn" if value >= warn else "ok"

    return pl.DataFrame(
        [{**r, "verdict": verdict(r["psi"])} for r in rows],
        schema={"column": pl.String, "kind": pl.String, "psi": pl.Float64, "verdict": pl.String},
    ).sort("psi", descending=True, nulls_last=True)
