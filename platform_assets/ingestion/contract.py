"""The ingestion data contract as pure functions, free of Dagster.

The pandera schemas of the two feeds, the row split that quarantines what breaks them and the
readable summary of the failures. Kept free of Dagster so the same rules run in the asset
checks, tests and ``bench/ingestion.py``, and so a rule is defined once. The columns, id and
amount rules and vocabularies come from the dataset declaration (``resources/sources/dataset.py``):
an optional column the data does not have is not in the contract, and one it has without a
declared vocabulary is only held to its type and to having no nulls. Everything is polars and
vectorised: a day of ten million rows is judged in a few seconds.
"""

import datetime
from dataclasses import dataclass

import pandera.polars as pa
import polars as pl
from pandera.engines import polars_engine

from resources.sources.dataset import Dataset, declared_dataset

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


def transaction_schema(
    day: datetime.date | None = None, dataset: Dataset | None = None
) -> pa.DataFrameSchema:
    """The data contract of the transactions feed, optionally bound to one business day.

    Args:
        day: When given, every ``event_timestamp`` must fall on this UTC day.
        dataset: The declaration the contract is derived from (default: the declared one).

    Returns:
        A strict pandera (polars) schema: exact columns and types, no nulls, ranges and
        allowed values, and each ``transaction_id`` at most once.
    """
    dataset = dataset or declared_dataset()
    rules = dataset.rules
    optional = {
        role: pa.Column(
            pl.String,
            checks=[pa.Check.isin(dataset.vocabularies[role])]
            if role in dataset.vocabularies
            else [],
        )
        for role in dataset.optional_roles
    }
    return pa.DataFrameSchema(
        {
            "transaction_id": pa.Column(
                pl.Int64,
                checks=[
                    pa.Check.ge(rules.min_id),
                    pa.Check(_first_occurrence, name="unique", error=FIRST_OCCURRENCE_RULE),
                ],
            ),
            "customer_id": pa.Column(pl.Int64, checks=pa.Check.ge(rules.min_id)),
            "merchant_id": pa.Column(pl.Int64, checks=pa.Check.ge(rules.min_id)),
            "amount": pa.Column(
                pl.Float64, checks=pa.Check.in_range(rules.min_amount, rules.max_amount)
            ),
            **optional,
            "event_timestamp": pa.Column(_UTC_TIMESTAMP, checks=[_within_day(day)] if day else []),
        },
        name="transactions",
        strict=True,
        ordered=False,
    )


def _reported_after_transaction(data: pa.PolarsData) -> pl.LazyFrame:
    return data.lazyframe.select(pl.col("reported_at") >= pl.col("transaction_timestamp"))


def chargeback_schema(
    day: datetime.date | None = None, dataset: Dataset | None = None
) -> pa.DataFrameSchema:
    """The data contract of the chargebacks (fraud labels) feed, optionally bound to a report day.

    A label must name a transaction once, come after it, and give a known reason; a label that
    does not is unusable for training.
    """
    dataset = dataset or declared_dataset()
    min_id = dataset.rules.min_id
    return pa.DataFrameSchema(
        {
            "transaction_id": pa.Column(pl.Int64, checks=pa.Check.ge(min_id), unique=True),
            "customer_id": pa.Column(pl.Int64, checks=pa.Check.ge(min_id)),
            "transaction_timestamp": pa.Column(_UTC_TIMESTAMP),
            "reported_at": pa.Column(_UTC_TIMESTAMP, checks=[_within_day(day)] if day else []),
            "reason": pa.Column(pl.String, checks=pa.Check.isin(dataset.label_reasons)),
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
