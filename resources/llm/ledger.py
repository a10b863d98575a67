"""The LLM cost ledger: every gateway call and A/B outcome, priced by the table in config.

Two tables behind a SQLAlchemy URL: a SQLite file locally (write-ahead log, so the cost report
reads while the gateway writes), PostgreSQL in production, where every gateway replica writes to
the one ledger. Cost of a call is prompt tokens x the model's input price + completion tokens x
its output price, attributed to the model that actually answered (after any fallback), the
endpoint and the use case. A cache hit costs nothing and records what it saved: the cost of the
call that filled the cache.
"""

import datetime
from typing import Any

import polars as pl
import sqlalchemy as sa
from dagster import Config, ConfigurableResource
from pydantic import Field
from sqlalchemy.exc import ResourceClosedError

from resources.llm import sql

_TEXT = [
    "at",
    "request_id",
    "use_case",
    "endpoint",
    "provider",
    "model",
    "prompt_version",
    "variant",
    "user_id",
]
CALL_SCHEMA = {
    **dict.fromkeys(_TEXT, pl.String),
    **dict.fromkeys(["prompt_tokens", "completion_tokens"], pl.Int64),
    **dict.fromkeys(["cost_usd"], pl.Float64),
    **dict.fromkeys(["cache_hit"], pl.Int64),
    **dict.fromkeys(["saved_usd", "latency_ms"], pl.Float64),
    **dict.fromkeys(["fallbacks"], pl.Int64),
}
OUTCOME_SCHEMA = {
    **dict.fromkeys(
        ["at", "request_id", "use_case", "user_id", "variant", "prompt_version"], pl.String
    ),
    "success": pl.Int64,
}
CALL_COLUMNS = list(CALL_SCHEMA)
OUTCOME_COLUMNS = list(OUTCOME_SCHEMA)

_SQL_TYPES = {pl.String: sa.Text(), pl.Int64: sa.Integer(), pl.Float64: sa.Double()}


def _columns(schema: dict[str, Any]) -> list[sa.Column]:
    return [
        sa.Column(name, sql.ISO_TEXT if name == "at" else _SQL_TYPES[dtype], nullable=False)
        for name, dtype in schema.items()
    ]


_METADATA = sa.MetaData()
_CALLS = sa.Table(
    "calls",
    _METADATA,
    *_columns(CALL_SCHEMA),
    sa.Index("calls_request_id", "request_id"),
    sa.Index("calls_at", "at"),
)
# At most one outcome per request, however many writers: the unique index makes the insert of a
# second one do nothing. (Ledgers written before it have a plain index, outcomes_request_id.)
_OUTCOMES = sa.Table(
    "outcomes",
    _METADATA,
    *_columns(OUTCOME_SCHEMA),
    sa.Index("outcomes_request_id_unique", "request_id", unique=True),
)


class ModelPrice(Config):
    """Price of one model in US dollars per million tokens."""

    input_per_million: float = Field(ge=0, description="USD per million prompt tokens.")
    output_per_million: float = Field(ge=0, description="USD per million completion tokens.")


def default_prices() -> dict[str, ModelPrice]:
    """List prices (USD per million tokens) of the models the default prompts name."""
    return {
        "flywheel-extractive": ModelPrice(input_per_million=0.0, output_per_million=0.0),
        "gpt-4o-mini": ModelPrice(input_per_million=0.15, output_per_million=0.60),
        "gpt-4o": ModelPrice(input_per_million=2.50, output_per_million=10.00),
    }


class CostLedger:
    """Appends calls and outcomes to the ledger; safe to share between request threads."""

    def __init__(self, url: str, prices: dict[str, ModelPrice]):
        self.url = url
        self.prices = prices
        self._open_engine: sa.Engine | None = sql.create_engine(url, "LLMLedger.url")
        sql.create_tables(self._open_engine, _METADATA)

    @property
    def _engine(self) -> sa.Engine:
        if self._open_engine is None:
            raise ResourceClosedError(f"the cost ledger {sql.redacted(self.url)} is closed")
        return self._open_engine

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        """Dollars for a call; a model missing from the price table is an error, not free."""
        if model not in self.prices:
            raise KeyError(f"model {model!r} has no price in the LLMLedger price table")
        price = self.prices[model]
        return (
            prompt_tokens * price.input_per_million + completion_tokens * price.output_per_million
        ) / 1e6

    def record_call(self, **call: Any) -> None:
        """Append one call; keys are ``CALL_COLUMNS`` (``at`` defaults to now)."""
        call.setdefault("at", datetime.datetime.now(datetime.UTC).isoformat())
        with self._engine.begin() as connection:
            connection.execute(_CALLS.insert(), {column: call[column] for column in CALL_COLUMNS})

    def record_outcome(self, **outcome: Any) -> bool:
        """Append one A/B outcome unless its request has one already; True if it was recorded.

        Keys are ``OUTCOME_COLUMNS`` (``at`` defaults to now). The check and the insert are one
        statement on a unique index, so two writers (threads, or gateway replicas on the same
        database) cannot both record an outcome for one request.
        """
        outcome.setdefault("at", datetime.datetime.now(datetime.UTC).isoformat())
        row = {column: outcome[column] for column in OUTCOME_COLUMNS}
        with self._engine.begin() as connection:
            return sql.insert_new(connection, _OUTCOMES, "request_id", row)

    def find_call(self, request_id: str) -> dict[str, Any] | None:
        """The ledger row of one request, or None if it was never recorded."""
        query = sa.select(_CALLS).where(_CALLS.c.request_id == request_id).limit(1)
        with self._engine.connect() as connection:
            row = connection.execute(query).first()
        return dict(zip(CALL_COLUMNS, row, strict=True)) if row else None

    def spend_since(self, since: str) -> dict[str, float]:
        """USD spent per use case at or after the ISO instant ``since`` (the budgets' view)."""
        query = (
            sa.select(_CALLS.c.use_case, sa.func.sum(_CALLS.c.cost_usd))
            .where(_CALLS.c.at >= since)
            .group_by(_CALLS.c.use_case)
        )
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        return {use_case: float(total) for use_case, total in rows}

    def _frame(self, table: sa.Table, schema: dict[str, Any], since: str | None) -> pl.DataFrame:
        query = sa.select(table)
        if since:
            query = query.where(table.c.at >= since)
        with self._engine.connect() as connection:
            rows = [tuple(row) for row in connection.execute(query)]
        return pl.DataFrame(rows, schema=schema, orient="row")

    def calls(self, since: str | None = None) -> pl.DataFrame:
        """Every call (at or after the ISO instant ``since``)."""
        return self._frame(_CALLS, CALL_SCHEMA, since)

    def outcomes(self, since: str | None = None) -> pl.DataFrame:
        """Every recorded A/B outcome (at or after ``since``)."""
        return self._frame(_OUTCOMES, OUTCOME_SCHEMA, since)

    def close(self) -> None:
        """Close the ledger's connections; using it afterwards is an error."""
        if self._open_engine is not None:
            self._open_engine.dispose()
            self._open_engine = None


class LLMLedger(ConfigurableResource):
    """Where the ledger lives, the price table, and the daily budgets that alert and stop.

    Attributes:
        url: ``sqlite:///<file>`` locally, ``postgresql://user:pass@host/db`` in production.
        prices: USD per million tokens, per model; a model missing here fails loudly.
        daily_budget_usd: Spend per UTC day, per use case; ``*`` is the total of all.
        warn_fraction: Share of a budget at which a warning goes out before the error at 100 %.
        hard_limit_fraction: Share of a budget at which the gateway refuses the use case's new
            questions until the UTC day ends (429 ``budget_exceeded``; cached answers are still
            served); None: the budgets only alert.
    """

    url: str = Field(
        description="Database of the cost ledger: sqlite:///<file> locally, postgresql://… in prod."
    )
    prices: dict[str, ModelPrice] = Field(default_factory=default_prices)
    daily_budget_usd: dict[str, float] = Field(
        default_factory=lambda: {"*": 50.0, "fraud_ops_assistant": 20.0},
        description="Daily spend limit per use case in USD; '*' is the total.",
    )
    warn_fraction: float = Field(default=0.8, gt=0, le=1)
    hard_limit_fraction: float | None = Field(
        default=1.0,
        gt=0,
        description="Share of a daily budget at which the gateway refuses new questions "
        "(429 budget_exceeded) until the UTC day ends; None: budgets only alert.",
    )

    def open(self) -> CostLedger:
        """The ledger, created on first use."""
        return CostLedger(self.url, self.prices)

    def hard_limits(self) -> dict[str, float] | None:
        """USD per UTC day at which the gateway stops, per budget key (None: it never stops)."""
        if self.hard_limit_fraction is None:
            return None
        return {
            key: budget * self.hard_limit_fraction for key, budget in self.daily_budget_usd.items()
        }
