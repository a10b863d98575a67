"""The dataset declaration: what a business's payments look like, so the platform fits the data.

A user onboards their own data by writing one YAML file and pointing ``FLYWHEEL_DATASET`` at it;
no project file changes. The declaration names where the rows come from (files, a SQL database
or the simulator), which source column plays each role of the platform's contract, where the
fraud labels come from (a separate chargebacks feed, or a column on the payment itself known a
fixed delay later), the first business day, when labels can be trusted, the id and amount rules,
the vocabularies of the optional columns and the features whose effect the domain says is
monotone. The contract, the checks, the features and the evaluation slices are derived from it:
an optional role the data does not have gets no check, no feature and no slice.

The simulator is one declared dataset among others (``datasets/simulator.yaml``, the default).
One code location serves one dataset: the declaration is read once per process, because the
daily partitions start on its first business day and Dagster builds them when the code loads.
"""

import datetime
import functools
import os
from pathlib import Path
from typing import Literal

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DATASET_VARIABLE = "FLYWHEEL_DATASET"
SIMULATOR_DATASET = Path(__file__).with_name("datasets") / "simulator.yaml"

# The contract's roles, named as the platform's columns. The first five every payment has.
REQUIRED_ROLES = ("transaction_id", "customer_id", "merchant_id", "amount", "event_timestamp")
# What each optional role unlocks: a contract check of its vocabulary, a drift column and an
# evaluation slice for all four; is_foreign and the home country for ``country``.
OPTIONAL_ROLES = ("currency", "merchant_category", "channel", "country")
ID_ROLES = ("transaction_id", "customer_id", "merchant_id")
LABEL_ROLES = ("transaction_id", "customer_id", "transaction_timestamp", "reported_at", "reason")
# The reason a label read from the payment's own row carries in the chargebacks feed.
LABEL_ON_ROW = "label_on_row"


class _Strict(BaseModel):
    """A part of the declaration: unknown keys are typos, and say so."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceDeclaration(_Strict):
    """Where the rows come from, with the options of that kind of source."""

    kind: Literal["simulator", "files", "sql"] = Field(
        description="simulator (generated), files (a folder per feed) or sql (tables)."
    )
    directory: str | None = Field(
        default=None,
        description="files: the folder holding transactions/ (and chargebacks/ when labels "
        "come from a feed); relative paths are relative to the declaration.",
    )
    file_format: Literal["parquet", "csv"] = "parquet"
    url: str | None = Field(default=None, description="sql: SQLAlchemy URL of the database.")
    transactions_table: str = "transactions"
    chargebacks_table: str = "chargebacks"
    completeness_table: str | None = Field(
        default=None, description="sql: table of (feed, business_day, completed_at) markers."
    )
    loaded_at_column: str | None = Field(
        default=None,
        description="files or sql: a column stamped with each row's delivery time; the latest "
        "stamp of a day is when it was delivered. Without it (or completeness_table) the "
        "delivery time is unknown and arrived_on_time does not judge it.",
    )
    seed: int = Field(default=7, description="simulator: seeds customers, merchants and days.")
    rows_per_day: int = Field(default=10_000, ge=1, description="simulator: payments per day.")

    @model_validator(mode="after")
    def _has_its_options(self) -> "SourceDeclaration":
        needed = {"files": "directory", "sql": "url"}.get(self.kind)
        if needed and not getattr(self, needed):
            raise ValueError(f"source.{needed} is required for a {self.kind} source")
        return self


class LabelDeclaration(_Strict):
    """Where fraud labels come from and when they can be trusted."""

    column: str | None = Field(
        default=None,
        description="The payment's own fraud flag (1/true: fraud), known delay_days after the "
        "payment. Empty: labels are a separate chargebacks feed.",
    )
    delay_days: int = Field(
        default=7,
        ge=0,
        description="Days after a payment by which its label is usually known: exactly, for a "
        "label on the row. Merchant risk features count frauds this long after the payments.",
    )
    maturity_days: int = Field(
        default=30,
        ge=1,
        description="Days after a payment by which a missing label means legitimate: training "
        "sets use no younger payment.",
    )
    columns: dict[str, str] = Field(
        default={},
        description="Chargebacks feed only: role -> source column for transaction_id, "
        "customer_id, transaction_timestamp, reported_at and reason (default: same names).",
    )
    reasons: list[str] = Field(
        default=[], description="Chargebacks feed only: the reasons a label may give."
    )

    @model_validator(mode="after")
    def _consistent(self) -> "LabelDeclaration":
        if unknown := sorted(set(self.columns) - set(LABEL_ROLES)):
            raise ValueError(f"labels.columns: {unknown} are not label roles {LABEL_ROLES}")
        if self.column and self.delay_days > self.maturity_days:
            raise ValueError("labels.delay_days must not exceed labels.maturity_days")
        return self


class Rules(_Strict):
    """The data's own bounds, checked by the contract."""

    min_id: int = Field(default=1, description="Smallest valid payment, customer or merchant id.")
    min_amount: float = Field(default=0.01, description="Smallest valid amount.")
    max_amount: float = Field(default=50_000.0, description="Largest valid amount.")


class Dataset(_Strict):
    """One business's payments as the platform reads them (see the module docstring)."""

    name: str = Field(description="Shown in run metadata and alerts.")
    first_business_day: datetime.date = Field(
        description="The first day of data: the daily partitions start here."
    )
    source: SourceDeclaration
    columns: dict[str, str] = Field(
        description="role -> source column. Required: transaction_id, customer_id, merchant_id, "
        "amount, event_timestamp. Optional: currency, merchant_category, channel, country."
    )
    ignored_columns: list[str] = Field(
        default=[],
        description="Source columns dropped on arrival (e.g. a simulator's own fraud scenario "
        "column). Any other column the roles do not name fails the contract.",
    )
    labels: LabelDeclaration = LabelDeclaration()
    rules: Rules = Rules()
    vocabularies: dict[str, list[str]] = Field(
        default={},
        description="Allowed values per optional role; a role without one is only checked for "
        "nulls.",
    )
    monotone_increasing: list[str] = Field(
        default=[],
        description="Model features whose increase may never lower the fraud score, where the "
        "domain agrees (LightGBM monotone constraints).",
    )

    @model_validator(mode="after")
    def _roles(self) -> "Dataset":
        roles = set(self.columns)
        if missing := [role for role in REQUIRED_ROLES if role not in roles]:
            raise ValueError(f"columns: the required roles {missing} are not mapped")
        if unknown := sorted(roles - set(REQUIRED_ROLES) - set(OPTIONAL_ROLES)):
            raise ValueError(
                f"columns: {unknown} are not roles; roles are {REQUIRED_ROLES + OPTIONAL_ROLES}"
            )
        if unknown := sorted(set(self.vocabularies) - roles):
            raise ValueError(f"vocabularies: {unknown} are not mapped optional roles")
        if self.labels.column and self.source.kind == "simulator":
            raise ValueError("labels.column: the simulator delivers labels as a chargebacks feed")
        return self

    def has(self, role: str) -> bool:
        """Whether the data has the optional ``role``."""
        return role in self.columns

    @property
    def optional_roles(self) -> tuple[str, ...]:
        """The optional roles the data has, in contract order."""
        return tuple(role for role in OPTIONAL_ROLES if self.has(role))

    def day_column(self, feed: str) -> str:
        """The source column that places a row of ``feed`` on its business day."""
        if feed == "transactions":
            return self.columns["event_timestamp"]
        return self.labels.columns.get("reported_at", "reported_at")

    def transactions(self, delivered: pl.DataFrame) -> pl.DataFrame:
        """A delivered batch of payments under the contract's names, exactly as delivered.

        The roles' columns are renamed, ignored columns and the label are dropped (the label
        reaches the platform only through the labels feed, when it is known); any other column
        stays, so the contract names it. Nothing is coerced: judging values is the contract's job.
        """
        dropped = [*self.ignored_columns, *([self.labels.column] if self.labels.column else [])]
        frame = delivered.drop(dropped, strict=False)
        return frame.rename(_present(self.columns, frame.columns))

    def chargebacks(self, delivered: pl.DataFrame) -> pl.DataFrame:
        """A delivered chargebacks batch under the contract's names."""
        return delivered.rename(_present(self.labels.columns, delivered.columns))

    def labels_on_rows(self, delivered: pl.DataFrame) -> pl.DataFrame:
        """The chargebacks feed of payments whose label is on their row: one row per fraud.

        Each fraud is reported exactly ``labels.delay_days`` after the payment, so the report
        day of payments on day D is D + delay.
        """
        assert self.labels.column is not None
        flag = self.labels.column
        if flag not in delivered.columns:
            raise ValueError(f"labels.column: the payments have no column {flag!r}")
        frauds = self.transactions(delivered.filter(pl.col(flag).cast(pl.Boolean)))
        delay = datetime.timedelta(days=self.labels.delay_days)
        return frauds.select(
            "transaction_id",
            "customer_id",
            transaction_timestamp=pl.col("event_timestamp"),
            reported_at=pl.col("event_timestamp") + delay,
            reason=pl.lit(LABEL_ON_ROW),
        )

    @property
    def label_reasons(self) -> list[str]:
        """The reasons the labels feed may give."""
        return [LABEL_ON_ROW] if self.labels.column else self.labels.reasons


def _present(mapping: dict[str, str], columns: list[str]) -> dict[str, str]:
    """The renames of the mapped columns the batch has (a missing one fails the contract)."""
    return {source: role for role, source in mapping.items() if source in columns}


def load_dataset(path: str | Path) -> Dataset:
    """Read and check a declaration, naming the file and the field of any error."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"dataset declaration {path}: {error}") from error
    try:
        dataset = Dataset.model_validate(raw)
    except ValidationError as error:
        raise ValueError(f"dataset declaration {path} is not valid:\n{error}") from error
    directory = dataset.source.directory
    if directory and not Path(directory).is_absolute():
        source = dataset.source.model_copy(update={"directory": str(path.parent / directory)})
        dataset = dataset.model_copy(update={"source": source})
    return dataset


@functools.cache
def _dataset_at(path: str) -> Dataset:
    return load_dataset(path)


def declared_dataset() -> Dataset:
    """The dataset of this code location: ``$FLYWHEEL_DATASET``, else the simulator's."""
    return _dataset_at(os.environ.get(DATASET_VARIABLE) or str(SIMULATOR_DATASET))
