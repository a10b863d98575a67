"""The SQL stores of the LLM pipeline (cost ledger, prompt registry): one SQLAlchemy code path.

A store is a URL: ``sqlite:///<file>`` locally (no service; the file and its folder are created on
first use), ``postgresql://…`` in production (psycopg 3). SQLite runs in write-ahead-log mode with
``synchronous=NORMAL``, so readers (the cost report) never block the writer (the gateway) and a
commit costs no fsync until a checkpoint; writers queue for its one write lock (busy timeout).
"""

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.dialects import postgresql, sqlite

SQLITE_PREFIX = "sqlite:///"
POSTGRES_PREFIXES = ("postgresql://", "postgres://", "postgresql+")
# ISO instants kept as text compare as text: PostgreSQL must compare them byte by byte (a
# database's default collation may order punctuation differently); SQLite always does.
ISO_TEXT = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
BUSY_SECONDS = 30.0
_WRITE_LOCK = "flywheel_write_lock"  # execution option: SQLite takes the write lock at BEGIN


def create_engine(url: str, field: str) -> sa.Engine:
    """An engine for ``url``; ``field`` (e.g. ``LLMLedger.url``) names the setting in errors."""
    if url.startswith(SQLITE_PREFIX):
        database = url.removeprefix(SQLITE_PREFIX).split("?", 1)[0]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": BUSY_SECONDS})
        event.listen(engine, "connect", _sqlite_connected)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if url.startswith(POSTGRES_PREFIXES):
        # psycopg 3 whatever SQLAlchemy's default driver; an explicit +driver is kept.
        scheme, rest = url.split("://", 1)
        driver = scheme if "+" in scheme else "postgresql+psycopg"
        return sa.create_engine(f"{driver}://{rest}", pool_pre_ping=True)
    raise ValueError(
        f"{field} must start with {SQLITE_PREFIX} or postgresql://, got {url.split(':', 1)[0]}:…"
    )


def shared_engine(url: str, field: str) -> sa.Engine:
    """One engine per URL and process, for stores read on every request (its pool is shared)."""
    with _ENGINES_LOCK:
        if url not in _ENGINES:
            _ENGINES[url] = create_engine(url, field)
        return _ENGINES[url]


_ENGINES: dict[str, sa.Engine] = {}
_ENGINES_LOCK = threading.Lock()


def _forget_shared_engines() -> None:
    """In a forked child, leave the parent's pooled connections alone (SQLAlchemy's recipe)."""
    global _ENGINES_LOCK
    _ENGINES_LOCK = threading.Lock()  # the parent may have held it while forking
    for engine in _ENGINES.values():
        engine.dispose(close=False)
    _ENGINES.clear()


def redacted(url: str) -> str:
    """``url`` fit for a message: its password hidden."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return url.split(":", 1)[0] + ":…"


def _sqlite_connected(dbapi_connection: Any, _record: Any) -> None:
    # Transactions begin in SQL (_sqlite_begin), not implicitly at pysqlite's first write.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # WAL with NORMAL sync: durable across crashes of the process, one fsync per checkpoint.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: sa.Connection) -> None:
    immediate = connection.get_execution_options().get(_WRITE_LOCK, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def serialized(engine: sa.Engine, name: str) -> Iterator[sa.Connection]:
    """A transaction that no other ``serialized(…, name)`` on the database runs beside.

    For a read followed by writes that depend on it (the label history, creating the tables).
    SQLite: ``BEGIN IMMEDIATE`` takes the file's write lock up front, so a writer never reads a
    snapshot another commits over. PostgreSQL: a transaction-scoped advisory lock on ``name``;
    readers are not blocked on either.
    """
    with engine.connect() as connection:
        connection.execution_options(**{_WRITE_LOCK: True})
        with connection.begin():
            if connection.dialect.name == "postgresql":
                key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], signed=True)
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            yield connection


def create_tables(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """Create ``metadata``'s missing tables and indexes (an index new to an old table too).

    Serialized: replicas starting together on a new database create them once.
    """
    with serialized(engine, f"schema:{','.join(sorted(metadata.tables))}") as connection:
        metadata.create_all(connection)
        for table in metadata.sorted_tables:
            for index in table.indexes:
                index.create(connection, checkfirst=True)


def insert_new(connection: sa.Connection, table: sa.Table, key: str, row: dict[str, Any]) -> bool:
    """Insert ``row`` unless ``table`` has one with its ``key`` (a unique index); True if it did.

    One statement (``INSERT … ON CONFLICT (key) DO NOTHING``), so of two writers racing on a key,
    on SQLite or PostgreSQL, exactly one inserts.
    """
    dialects = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
    statement = dialects[connection.dialect.name](table).on_conflict_do_nothing(
        index_elements=[key]
    )
    if not connection.dialect.insert_returning:  # SQLite before 3.35
        return connection.execute(statement, row).rowcount == 1
    # The row inserted comes back, none when it was not (psycopg's rowcount may be unknown: -1).
    return connection.execute(statement.returning(table.c[key]), row).first() is not None


os.register_at_fork(after_in_child=_forget_shared_engines)
