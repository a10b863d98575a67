"""The prediction log: every score the platform gives, batch or online, in one table.

Monitoring reads it to judge the champion, and the canary analysis to compare two models on their
own traffic, so both sources write the same columns: who was scored (request and transaction id,
customer, amount, time), by what (model name, version, variant), the model's inputs (one column
per feature), the score, the threshold and the decision. Locally it is a SQLite file under the
data folder; in production a PostgreSQL database. Both are written and read through ADBC, which
moves Arrow batches in bulk: a million rows in about three seconds each way on this machine.
"""

import contextlib
import functools
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import polars as pl
from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

SQLITE_PREFIX = "sqlite:///"
POSTGRES_PREFIXES = ("postgresql://", "postgres://")
BATCH = "batch"
ONLINE = "online"
# The columns every writer fills; the model's features come after them, one column each.
LOG_COLUMNS: dict[str, Any] = {
    "request_id": pl.String,
    "transaction_id": pl.String,
    "customer_id": pl.Int64,
    "amount": pl.Float64,
    "event_time": pl.Datetime("us", "UTC"),
    "day": pl.String,
    "model_name": pl.String,
    "model_version": pl.String,
    "variant": pl.String,
    "source": pl.String,
    "score": pl.Float64,
    "threshold": pl.Float64,
    "decision": pl.Boolean,
    "logged_at": pl.Datetime("us", "UTC"),
    # Online only: how long the answer took, why a variant could not score (score empty), and
    # the canary release under way (``ModelRegistry.release_of``), empty outside releases.
    "latency_ms": pl.Float64,
    "error": pl.String,
    "release": pl.String,
}
_SQLITE_BATCH_ROWS = "adbc.sqlite.query.batch_rows"
# Filled by the prediction service only; other writers may leave them out (written empty).
ONLINE_ONLY = ("latency_ms", "error", "release")
# Column types for columns added to an existing table (new features, newer log columns).
_SQL_TYPES = {pl.Float64: "DOUBLE PRECISION", pl.String: "TEXT", pl.Int64: "BIGINT"}


class PredictionLog(ConfigurableResource):
    """Where predictions are recorded: a SQLite file locally, PostgreSQL in production.

    Attributes:
        url: ``sqlite:///<path>`` or ``postgresql://user:pass@host/db``.
        table: The table predictions go to (created on the first write).
    """

    url: str = Field(description="sqlite:///<path> (local) or postgresql://… (prod).")
    table: str = Field(default="predictions", description="Table of the prediction log.")
    # PostgreSQL: one connection held per process and resource, used by one thread at a time.
    # Opening one through ADBC takes about 40 ms, most of a small append's time (the online
    # writer's 200 rows: 45 ms a batch with a connection each, bench/scale.py).
    _held: tuple[int, Any] | None = PrivateAttr(default=None)
    _held_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def replace(self, day: str, source: str, rows: pl.DataFrame) -> int:
        """Write ``rows`` as the predictions of ``source`` on ``day``, replacing earlier ones.

        The delete and the insert are one transaction, so a reader sees the old rows or the new
        ones, never a mix; rows of other days and sources are untouched. Returns the rows written.
        """
        if (rows["day"] != day).any() or (rows["source"] != source).any():
            raise ValueError(f"every row must be of day {day} and source {source!r}")
        return self._write(rows, replacing=(day, source))

    def append(self, rows: pl.DataFrame) -> int:
        """Add ``rows`` (any days and sources) to the log; returns the rows written."""
        return self._write(rows, replacing=None)

    def _write(self, rows: pl.DataFrame, replacing: tuple[str, str] | None) -> int:
        """Insert ``rows`` in one transaction, first deleting the (day, source) ``replacing``."""
        rows = rows.with_columns(
            pl.lit(None, LOG_COLUMNS[name]).alias(name)
            for name in ONLINE_ONLY
            if name not in rows.columns
        )
        missing = sorted(set(LOG_COLUMNS) - set(rows.columns))
        if missing:
            raise ValueError(f"prediction log rows lack the columns {missing}")
        with self._connection(write=True) as connection, connection.cursor() as cursor:
            existing = self._columns(connection)
            if existing:
                for name in [c for c in rows.columns if c not in existing]:
                    sql_type = _SQL_TYPES.get(rows.schema[name].base_type(), "DOUBLE PRECISION")
                    cursor.execute(f'ALTER TABLE {self.table} ADD COLUMN "{name}" {sql_type}')
                if replacing:
                    cursor.execute(
                        f"DELETE FROM {self.table} WHERE day = {self._param(1)} "
                        f"AND source = {self._param(2)}",
                        replacing,
                    )
            cursor.adbc_ingest(self.table, rows.to_arrow(), mode="create_append")
            if not existing:
                for columns in ("day, source", "source, model_version"):
                    name = f"{self.table}_{columns.replace(', ', '_')}"
                    cursor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {self.table} ({columns})")
        return rows.height

    def read(self, day: str, sources: Sequence[str] = (BATCH,)) -> pl.DataFrame:
        """The predictions of ``day`` from ``sources``; an empty frame if there are none."""
        marks = ", ".join(self._param(i + 2) for i in range(len(sources)))
        return self._select(f"day = {self._param(1)} AND source IN ({marks})", (day, *sources))

    def read_versions(self, source: str, versions: Sequence[str]) -> pl.DataFrame:
        """Every prediction of ``source`` made by one of the model ``versions``."""
        marks = ", ".join(self._param(i + 2) for i in range(len(versions)))
        return self._select(
            f"source = {self._param(1)} AND model_version IN ({marks})", (source, *versions)
        )

    def _select(self, where: str, parameters: tuple[str, ...]) -> pl.DataFrame:
        with self._connection() as connection:
            columns = self._columns(connection)
            if not columns:
                return pl.DataFrame(schema=LOG_COLUMNS)
            with connection.cursor() as cursor:
                if self.url.startswith(SQLITE_PREFIX):
                    # SQLite types values, not columns: ADBC infers each column's type from its
                    # first batch, and a column empty there (a feature unknown for the first
                    # payments) would be read as integers. One batch sees every value.
                    cursor.adbc_statement.set_options(**{_SQLITE_BATCH_ROWS: str(10**9)})
                cursor.execute(f"SELECT * FROM {self.table} WHERE {where}", parameters)
                frame = pl.from_arrow(cursor.fetch_arrow_table())
        assert isinstance(frame, pl.DataFrame)
        # A table written before a log column existed reads it as empty.
        frame = frame.with_columns(
            pl.lit(None, dtype).alias(name)
            for name, dtype in LOG_COLUMNS.items()
            if name not in columns
        )
        # SQLite keeps timestamps as ISO text and booleans as integers; PostgreSQL keeps types.
        return frame.with_columns(
            pl.col(name).str.to_datetime(time_unit="us", time_zone="UTC")
            if frame.schema[name] == pl.String and isinstance(dtype, pl.Datetime)
            else pl.col(name).cast(dtype)
            for name, dtype in LOG_COLUMNS.items()
        )

    def _param(self, position: int) -> str:
        return "?" if self.url.startswith(SQLITE_PREFIX) else f"${position}"

    @contextmanager
    def _connection(self, write: bool = False) -> Iterator[Any]:
        """A connection; with ``write``, one transaction committed on success, else rolled back."""
        if self.url.startswith(SQLITE_PREFIX):
            connection = _sqlite(Path(self.url.removeprefix(SQLITE_PREFIX)), write)
            try:
                yield connection
                if write:
                    _end(connection, "COMMIT", sqlite=True)
            except BaseException:
                if write:
                    _end(connection, "ROLLBACK", sqlite=True)
                raise
            finally:
                connection.close()
        elif self.url.startswith(POSTGRES_PREFIXES):
            with self._held_lock:
                connection = self._postgres()
                try:
                    yield connection
                    # A reader's transaction ends too: a held connection must not sit idle in
                    # one, keeping an old snapshot.
                    _end(connection, "COMMIT" if write else "ROLLBACK", sqlite=False)
                except BaseException:
                    self._drop_held()  # its state is unknown: the next use opens a new one
                    raise
        else:
            raise ValueError(
                f"PredictionLog.url must start with {SQLITE_PREFIX} or postgresql://, got "
                f"{self.url.split(':', 1)[0]}:…"
            )

    def _postgres(self) -> Any:
        """This process's held PostgreSQL connection, opened on first use (and after a fork)."""
        if self._held is None or self._held[0] != os.getpid():
            import adbc_driver_postgresql.dbapi

            self._held = (os.getpid(), adbc_driver_postgresql.dbapi.connect(self.url))
        return self._held[1]

    def _drop_held(self) -> None:
        if self._held is not None and self._held[0] == os.getpid():
            with contextlib.suppress(Exception):  # broken already: a new one replaces it
                self._held[1].close()
        self._held = None

    def close(self) -> None:
        """Close the held PostgreSQL connection, if any (the next use opens another)."""
        with self._held_lock:
            self._drop_held()

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        """Dagster closes the held connection when the run's step is done with the resource."""
        self.close()

    def _columns(self, connection: Any) -> set[str]:
        """The table's columns; empty when the table does not exist yet."""
        from adbc_driver_manager import ProgrammingError

        try:
            return set(connection.adbc_get_table_schema(self.table).names)
        except ProgrammingError as error:
            if "NOT_FOUND" not in str(error):
                raise
            if not self.url.startswith(SQLITE_PREFIX):
                connection.rollback()  # PostgreSQL aborts a transaction at its first error
            return set()


def _sqlite(path: Path, write: bool) -> Any:
    """A SQLite connection; a writer's holds the write lock from its first statement.

    ADBC opens deferred transactions: a writer that reads first (the table's columns) and then
    writes fails at once with "database is locked" when another process wrote in between (its
    snapshot is stale; waiting cannot help, so busy_timeout does not apply). ``BEGIN IMMEDIATE``
    takes the lock up front, and busy_timeout makes writers queue for it instead of failing.
    """
    import adbc_driver_sqlite.dbapi

    _write_ahead_log(path)
    connection = adbc_driver_sqlite.dbapi.connect(str(path), autocommit=True)
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout = 30000")
        if write:
            cursor.execute("BEGIN IMMEDIATE")
    return connection


def _end(connection: Any, how: str, sqlite: bool) -> None:
    """End a write transaction with ``how``, COMMIT or ROLLBACK.

    SQLite's is our own ``BEGIN IMMEDIATE`` in ADBC's autocommit mode, where ``commit()`` does
    nothing: it ends in SQL. PostgreSQL's is the driver's.
    """
    if sqlite:
        with connection.cursor() as cursor:
            cursor.execute(how)
    else:
        (connection.commit if how == "COMMIT" else connection.rollback)()


@functools.cache
def _write_ahead_log(path: Path) -> None:
    """Put the SQLite file in write-ahead-log mode, once per process and file.

    The prediction service writes while assets read: with the log, readers never block the
    writer. The mode is a setting of the file, and can only be set outside a transaction.
    """
    import sqlite3

    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path)) as setup:
        setup.execute("PRAGMA journal_mode = WAL")
