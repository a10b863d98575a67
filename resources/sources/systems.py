"""Source systems: where the platform's raw transactions and fraud labels come from.

Every source answers the same two questions for a business day - its transactions, and the
chargebacks reported that day - and says clearly when a day is not there yet. The data is
returned exactly as the source delivers it, under the contract's column names from the dataset
declaration (``dataset.py``): judging it is the ingestion checks' job, so a source never fixes,
drops or coerces a bad value. When the declaration puts the label on the payment's row, the
chargebacks of a day are the frauds among the payments of ``labels.delay_days`` before it.
"""

import datetime
from abc import abstractmethod
from pathlib import Path
from typing import Literal, TypeVar

import polars as pl
import sqlalchemy as sa
from dagster import Config, ConfigurableResource
from pydantic import Field, PrivateAttr, ValidationInfo, field_validator

from resources.sources.dataset import Dataset, SourceDeclaration, declared_dataset
from resources.sources.incidents import Scenario
from resources.sources.schema import CHARGEBACK_SCHEMA, Feed
from resources.sources.simulator import CardPaymentsSimulator


class PartitionNotReady(RuntimeError):
    """The source has not delivered a day (yet): retry later, do not treat it as empty."""


def _day_bounds(day: datetime.date) -> tuple[datetime.datetime, datetime.datetime]:
    start = datetime.datetime.combine(day, datetime.time(), tzinfo=datetime.UTC)
    return start, start + datetime.timedelta(days=1)


Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)


def _as_utc(frame: Frame) -> Frame:
    """Mark naive timestamps as UTC (files and SQLite carry no zone); aware ones are converted."""
    fixes = []
    for name, dtype in frame.collect_schema().items():
        if isinstance(dtype, pl.Datetime):
            column = pl.col(name).dt.cast_time_unit("us")
            fixes.append(
                (
                    column.dt.replace_time_zone("UTC")
                    if dtype.time_zone is None
                    else column.dt.convert_time_zone("UTC")
                ).alias(name)
            )
    return frame.with_columns(fixes) if fixes else frame


def _naive_utc(moment: datetime.datetime) -> datetime.datetime:
    """``moment`` in UTC without its zone, to compare with a zoneless timestamp column."""
    return moment.astimezone(datetime.UTC).replace(tzinfo=None)


def _is_day_file(path: Path) -> bool:
    """Whether a file is named after one day (``2026-03-02.parquet``)."""
    try:
        datetime.date.fromisoformat(path.stem)
    except ValueError:
        return False
    return True


class Delivery:
    """One day of one feed as delivered, and when the source made it available."""

    def __init__(self, frame: pl.DataFrame, available_at: datetime.datetime | None) -> None:
        self.frame = frame
        self.available_at = available_at


def _stamped(
    frame: pl.DataFrame, column: str | None
) -> tuple[pl.DataFrame, datetime.datetime | None]:
    """The rows without their per-row delivery stamp, and the latest stamp (None without one)."""
    if column is None:
        return frame, None
    latest = frame.get_column(column).max()
    return frame.drop(column), latest if isinstance(latest, datetime.datetime) else None


class SourceSystem(ConfigurableResource):
    """Interface of a source system: one day of one feed at a time, read as declared."""

    def fetch(self, feed: Feed, day: datetime.date, as_of: datetime.datetime) -> Delivery:
        """The rows of ``feed`` for business ``day`` as known at ``as_of``, named as declared.

        Raises:
            PartitionNotReady: the source has not delivered the day by ``as_of``.
        """
        dataset = declared_dataset()
        if feed == "chargebacks" and dataset.labels.column:
            return self._labels_on_rows(dataset, day, as_of)
        delivery = self.read(feed, day, as_of, dataset.day_column(feed))
        rename = dataset.transactions if feed == "transactions" else dataset.chargebacks
        return Delivery(rename(delivery.frame), delivery.available_at)

    def _labels_on_rows(
        self, dataset: Dataset, day: datetime.date, as_of: datetime.datetime
    ) -> Delivery:
        """The frauds among the payments of ``labels.delay_days`` before ``day``."""
        if as_of < _day_bounds(day)[1]:
            raise PartitionNotReady(f"the labels reported on {day} are known once the day ends")
        delay = datetime.timedelta(days=dataset.labels.delay_days)
        paid_on = day - delay
        if paid_on < dataset.first_business_day:
            return Delivery(pl.DataFrame(schema=CHARGEBACK_SCHEMA), None)
        try:
            delivery = self.read("transactions", paid_on, as_of, dataset.day_column("transactions"))
        except PartitionNotReady as error:
            raise PartitionNotReady(
                f"the labels reported on {day} are on the payments of {paid_on}: {error}"
            ) from error
        available_at = delivery.available_at and delivery.available_at + delay
        return Delivery(dataset.labels_on_rows(delivery.frame), available_at)

    @abstractmethod
    def read(
        self, feed: Feed, day: datetime.date, as_of: datetime.datetime, day_column: str
    ) -> Delivery:
        """The source's own rows of ``feed`` whose ``day_column`` falls on ``day``.

        Raises:
            PartitionNotReady: the source has not delivered the day by ``as_of``.
        """

    def describe(self) -> str:
        """One line naming the source, for metadata and alerts."""
        return type(self).__name__


class ScenarioConfig(Config):
    """An incident or drift the simulator applies between two dates (see INCIDENT_KINDS)."""

    kind: str = Field(description="e.g. null_spike, schema_change, covariate_drift.")
    start: str = Field(description="First affected day, YYYY-MM-DD.")
    end: str = Field(description="Last affected day (inclusive), YYYY-MM-DD.")
    intensity: float = Field(default=1.0, description="Share of rows, magnitude or hours late.")

    @field_validator("start", "end")
    @classmethod
    def _is_a_day(cls, value: str, info: ValidationInfo) -> str:
        try:
            datetime.date.fromisoformat(value)
        except ValueError:
            message = f"ScenarioConfig.{info.field_name} must be YYYY-MM-DD, got {value!r}"
            raise ValueError(message) from None
        return value


class SimulatedSource(SourceSystem):
    """The card-payments simulator (default): deterministic by seed and date.

    Attributes:
        seed: Seeds customers, merchants and every day.
        rows_per_day: Average transactions per day (hundreds to 10M). The default gives two weeks
            of matured labels enough frauds (about 0.6 %) for the fraud model to clear its gate.
        scenarios: Incidents and drifts switched on for date ranges.
        max_label_delay_days: Chargebacks arrive 1..N days after the transaction.
    """

    seed: int = 7
    rows_per_day: int = 10_000
    scenarios: list[ScenarioConfig] = []
    max_label_delay_days: int = 30
    _simulator: CardPaymentsSimulator | None = PrivateAttr(default=None)

    @property
    def simulator(self) -> CardPaymentsSimulator:
        """The simulator, built once per resource instance (building the population costs)."""
        if self._simulator is None:
            self._simulator = CardPaymentsSimulator(
                seed=self.seed,
                rows_per_day=self.rows_per_day,
                scenarios=[
                    Scenario(
                        kind=s.kind,
                        start=datetime.date.fromisoformat(s.start),
                        end=datetime.date.fromisoformat(s.end),
                        intensity=s.intensity,
                    )
                    for s in self.scenarios
                ],
                max_label_delay_days=self.max_label_delay_days,
            )
        return self._simulator

    def read(
        self, feed: Feed, day: datetime.date, as_of: datetime.datetime, day_column: str
    ) -> Delivery:
        """Generate the day; refuse it before the simulated source would have delivered it."""
        if feed == "transactions":
            simulated = self.simulator.day(day)
            frame, available_at = simulated.transactions, simulated.available_at
        else:
            frame = self.simulator.chargebacks(day)
            available_at = _day_bounds(day)[1] + datetime.timedelta(minutes=30)
        if available_at is None:
            raise PartitionNotReady(f"{feed} for {day} has not been delivered by the simulator")
        if as_of < available_at:
            raise PartitionNotReady(
                f"{feed} for {day} lands at {available_at.isoformat()}; it is {as_of.isoformat()}"
            )
        return Delivery(frame, available_at)

    def describe(self) -> str:
        """Name the seed and volume so a run's metadata says which simulated world it saw."""
        return f"simulator(seed={self.seed}, rows_per_day={self.rows_per_day})"


class FileSource(SourceSystem):
    """A directory of parquet or CSV files per feed: ``<directory>/<feed>/...``.

    Either one file per day (``transactions/2026-03-02.parquet``) or any files with the declared
    timestamp column (``columns.event_timestamp`` for transactions, ``reported_at`` for
    chargebacks) that places each row on its day. A day counts as delivered once its file exists
    (or, without per-day files, once any row of that day does). CSV timestamps without a zone
    are read as UTC.

    When a day was delivered is read from the data, never from a file's modification time
    (copying history would make it arrive years late): ``loaded_at_column`` is a column the
    loader stamps on each row; only rows stamped by ``as_of`` are returned, the latest stamp is
    the delivery time, and the column itself is left out of the frame. Without it the delivery
    time is unknown.

    Attributes:
        directory: Folder holding one sub-folder per feed.
        file_format: ``parquet`` or ``csv``.
        loaded_at_column: Per-row delivery-time column, or None.
    """

    directory: str = Field(description="Folder holding one sub-folder per feed.")
    file_format: Literal["parquet", "csv"] = "parquet"
    loaded_at_column: str | None = Field(
        default=None,
        description="Column stamped with each row's delivery time; the latest stamp of a day "
        "is its delivery time.",
    )

    def _scan(self, paths: list[Path]) -> pl.LazyFrame:
        """The files as one lazy frame, timestamps in UTC, so a day's filter reads only its rows."""
        if self.file_format == "parquet":
            frames = [_as_utc(pl.scan_parquet(p)) for p in paths]
        else:
            frames = [_as_utc(pl.scan_csv(p, try_parse_dates=True)) for p in paths]
        return pl.concat(frames, how="vertical_relaxed")

    def read(
        self, feed: Feed, day: datetime.date, as_of: datetime.datetime, day_column: str
    ) -> Delivery:
        """Read the day's file, or filter every file of the feed by its timestamp column."""
        folder = Path(self.directory, feed)
        day_file = folder / f"{day.isoformat()}.{self.file_format}"
        files = [day_file] if day_file.exists() else sorted(folder.glob(f"*.{self.file_format}"))
        if not day_file.exists() and (not files or any(_is_day_file(f) for f in files)):
            # Per-day layout: the day's file is the delivery, so its absence means not yet.
            raise PartitionNotReady(f"no {feed} file for {day} under {folder}")
        frame = self._scan(files)
        schema = frame.collect_schema()
        if not day_file.exists():
            if day_column not in schema:
                raise ValueError(
                    f"{feed} files under {folder} have no per-day files and no '{day_column}' "
                    "column to place rows on days"
                )
            start, end = _day_bounds(day)
            frame = frame.filter((pl.col(day_column) >= start) & (pl.col(day_column) < end))
        if self.loaded_at_column:
            if self.loaded_at_column not in schema:
                raise ValueError(
                    f"{feed} files under {folder} have no '{self.loaded_at_column}' column "
                    "(source.loaded_at_column)"
                )
            frame = frame.filter(pl.col(self.loaded_at_column) <= as_of)
        rows, delivered = _stamped(frame.collect(), self.loaded_at_column)
        if rows.is_empty():
            raise PartitionNotReady(
                f"no {feed} rows for {day} in {len(files)} files under {folder} by {as_of}"
            )
        return Delivery(rows, delivered)

    def describe(self) -> str:
        """Name the folder the rows came from."""
        return f"files({self.directory}, {self.file_format})"


class SqlSource(SourceSystem):
    """Tables in any database SQLAlchemy can reach (SQLite or DuckDB files locally).

    Queries are built with SQLAlchemy Core from the reflected table, and the day bounds are bound
    parameters: no SQL text is ever assembled from strings. A day with no rows is not delivered.

    When a day was delivered (``Delivery.available_at``, judged by ``arrived_on_time``) is read
    from the source, never taken from the clock of the fetch:

    - ``completeness_table``: a marker table the loader writes once a day is complete, one row per
      feed and day with columns ``feed`` (``transactions`` or ``chargebacks``), ``business_day``
      (a DATE or ``YYYY-MM-DD`` text) and ``completed_at`` (a timestamp, UTC if it has no zone).
      A day is delivered only once its marker exists and ``completed_at <= as_of``; the delivery
      time is ``completed_at``. Preferred: it says the day is whole, not just that rows arrived.
    - ``loaded_at_column``: a column of the feed tables the loader stamps on each row (UTC if
      without a zone). Only rows loaded by ``as_of`` are returned, the delivery time is the
      latest stamp among them, and the column itself is left out of the frame (load metadata,
      not part of the feed's schema).

    With neither, the delivery time is unknown (``None``) rather than the fetch time.

    Attributes:
        url: SQLAlchemy URL, e.g. ``sqlite:////data/payments.db``; a secret in production, so
            set it with ``EnvVar("FLYWHEEL_SOURCE_URL")``.
        transactions_table: Table holding the transactions feed.
        chargebacks_table: Table holding the chargebacks feed.
        completeness_table: Marker table of completed days (see above), or None.
        loaded_at_column: Per-row load-time column of the feed tables (see above), or None.
    """

    url: str = Field(description="SQLAlchemy URL of the source database.")
    transactions_table: str = "transactions"
    chargebacks_table: str = "chargebacks"
    completeness_table: str | None = Field(
        default=None,
        description="Table of (feed, business_day, completed_at) markers written by the loader "
        "once a day is complete; its completed_at is the delivery time.",
    )
    loaded_at_column: str | None = Field(
        default=None,
        description="Column of the feed tables stamped with each row's load time; the latest "
        "stamp of a day is its delivery time.",
    )

    _engine: sa.Engine | None = PrivateAttr(default=None)

    @property
    def engine(self) -> sa.Engine:
        """One engine (and connection pool) per resource instance."""
        if self._engine is None:
            self._engine = sa.create_engine(self.url)
        return self._engine

    def _table(self, name: str) -> sa.Table:
        return sa.Table(name, sa.MetaData(), autoload_with=self.engine)

    def _column(self, table: sa.Table, name: str, purpose: str) -> sa.ColumnElement:
        if name not in table.c:
            raise ValueError(f"table {table.name} has no '{name}' column {purpose}")
        return table.c[name]

    def _completed_at(
        self, feed: Feed, day: datetime.date, as_of: datetime.datetime
    ) -> datetime.datetime:
        """When the loader marked the day complete; not ready without a marker by ``as_of``."""
        assert self.completeness_table is not None
        markers = self._table(self.completeness_table)
        purpose = "for the completeness markers"
        feed_column = self._column(markers, "feed", purpose)
        day_column = self._column(markers, "business_day", purpose)
        completed = self._column(markers, "completed_at", purpose)
        day_value = day if isinstance(day_column.type, sa.Date) else day.isoformat()
        query = sa.select(sa.func.min(completed)).where(
            feed_column == feed, day_column == day_value
        )
        with self.engine.connect() as connection:
            value = connection.execute(query).scalar()
        if isinstance(value, str):  # SQLite returns an aggregate of DATETIME text as text
            value = datetime.datetime.fromisoformat(value)
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        if value is None or value > as_of:
            raise PartitionNotReady(
                f"{feed} for {day} is not marked complete in {self.completeness_table} "
                f"by {as_of.isoformat()}"
            )
        return value

    def read(
        self, feed: Feed, day: datetime.date, as_of: datetime.datetime, day_column: str
    ) -> Delivery:
        """Select the rows whose timestamp falls on ``day``, with the source's delivery time."""
        if not isinstance(day, datetime.date):
            raise TypeError(f"day must be a datetime.date, got {type(day).__name__}")
        name = self.transactions_table if feed == "transactions" else self.chargebacks_table
        table = self._table(name)
        column = self._column(table, day_column, "to place rows on days")
        available_at = self._completed_at(feed, day, as_of) if self.completeness_table else None
        start, end = _day_bounds(day)
        if not getattr(column.type, "timezone", False):
            # SQLite and most DATETIME columns store UTC without a zone
            start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
        columns = list(table.c)
        conditions = [column >= start, column < end]
        loaded = None
        if self.loaded_at_column:
            loaded = self._column(table, self.loaded_at_column, "holding load times")
            bound = as_of if getattr(loaded.type, "timezone", False) else _naive_utc(as_of)
            conditions.append(loaded <= bound)
        query = sa.select(*columns).where(*conditions)
        with self.engine.connect() as connection:
            frame = pl.read_database(query, connection, infer_schema_length=None)
        if frame.is_empty():
            raise PartitionNotReady(f"no {feed} rows for {day} in table {name} by {as_of}")
        frame, watermark = _stamped(_as_utc(frame), self.loaded_at_column)
        if watermark is not None:
            available_at = max(available_at or watermark, watermark)
        return Delivery(frame, available_at)

    def describe(self) -> str:
        """Name the database without its credentials."""
        return f"sql({sa.make_url(self.url).render_as_string(hide_password=True)})"


def declared_source(declaration: SourceDeclaration) -> SourceSystem:
    """The source resource a dataset declaration names, with its options."""
    if declaration.kind == "simulator":
        return SimulatedSource(seed=declaration.seed, rows_per_day=declaration.rows_per_day)
    if declaration.kind == "files":
        assert declaration.directory is not None  # the declaration checked it
        return FileSource(
            directory=declaration.directory,
            file_format=declaration.file_format,
            loaded_at_column=declaration.loaded_at_column,
        )
    assert declaration.url is not None  # the declaration checked it
    return SqlSource(
        url=declaration.url,
        transactions_table=declaration.transactions_table,
        chargebacks_table=declaration.chargebacks_table,
        completeness_table=declaration.completeness_table,
        loaded_at_column=declaration.loaded_at_column,
    )
