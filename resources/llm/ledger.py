"""The LLM cost ledger: every gateway call and A/B outcome, priced by the table in config.

One SQLite file (WAL, so the cost report reads while the gateway writes). Cost of a call is
prompt tokens x the model's input price + completion tokens x its output price, attributed to
the model that actually answered (after any fallback), the endpoint and the use case. A cache
hit costs nothing and records what it saved: the cost of the call that filled the cache.
"""

import datetime
import sqlite3
import threading
from pathlib import Path
from typing import Any

import polars as pl
from dagster import Config, ConfigurableResource
from pydantic import Field

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    at TEXT NOT NULL, request_id TEXT NOT NULL, use_case TEXT NOT NULL, endpoint TEXT NOT NULL,
    provider TEXT NOT NULL, model TEXT NOT NULL, prompt_version TEXT NOT NULL,
    variant TEXT NOT NULL, user_id TEXT NOT NULL, prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL, cache_hit INTEGER NOT NULL,
    saved_usd REAL NOT NULL, latency_ms REAL NOT NULL, fallbacks INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outcomes (
    at TEXT NOT NULL, request_id TEXT NOT NULL, use_case TEXT NOT NULL, user_id TEXT NOT NULL,
    variant TEXT NOT NULL, prompt_version TEXT NOT NULL, success INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_request_id ON calls (request_id);
CREATE INDEX IF NOT EXISTS calls_at ON calls (at);
CREATE INDEX IF NOT EXISTS outcomes_request_id ON outcomes (request_id);
"""
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
    """Appends calls and outcomes to the ledger file; safe to share between request threads."""

    def __init__(self, path: str | Path, prices: dict[str, ModelPrice]):
        self.path = Path(path)
        self.prices = prices
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL with NORMAL sync: durable across crashes of the process, one fsync per checkpoint.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

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
        row = tuple(call[column] for column in CALL_COLUMNS)
        with self._lock:
            self._db.execute(f"INSERT INTO calls VALUES ({','.join('?' * len(row))})", row)

    def record_outcome(self, **outcome: Any) -> bool:
        """Append one A/B outcome unless its request has one already; True if it was recorded.

        Keys are ``OUTCOME_COLUMNS`` (``at`` defaults to now). The check and the insert are one
        statement, so two writers (threads, or gateway replicas on the same file) cannot both
        record an outcome for one request.
        """
        outcome.setdefault("at", datetime.datetime.now(datetime.UTC).isoformat())
        row = tuple(outcome[column] for column in OUTCOME_COLUMNS)
        with self._lock:
            cursor = self._db.execute(
                f"INSERT INTO outcomes SELECT {','.join('?' * len(row))} "
                "WHERE NOT EXISTS (SELECT 1 FROM outcomes WHERE request_id = ?)",
                (*row, outcome["request_id"]),
            )
        return cursor.rowcount == 1

    def find_call(self, request_id: str) -> dict[str, Any] | None:
        """The ledger row of one request, or None if it was never recorded."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM calls WHERE request_id = ?", (request_id,)
            ).fetchone()
        return dict(zip(CALL_COLUMNS, row, strict=True)) if row else None

    def spend_since(self, since: str) -> dict[str, float]:
        """USD spent per use case at or after the ISO instant ``since`` (the budgets' view)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT use_case, SUM(cost_usd) FROM calls WHERE at >= ? GROUP BY use_case",
                (since,),
            ).fetchall()
        return {use_case: float(total) for use_case, total in rows}

    def _frame(self, table: str, schema: dict[str, Any], since: str | None) -> pl.DataFrame:
        query = f"SELECT * FROM {table}" + (" WHERE at >= ?" if since else "")
        with self._lock:
            rows = self._db.execute(query, (since,) if since else ()).fetchall()
        return pl.DataFrame(rows, schema=schema, orient="row")

    def calls(self, since: str | None = None) -> pl.DataFrame:
        """Every call (at or after the ISO instant ``since``)."""
        return self._frame("calls", CALL_SCHEMA, since)

    def outcomes(self, since: str | None = None) -> pl.DataFrame:
        """Every recorded A/B outcome (at or after ``since``)."""
        return self._frame("outcomes", OUTCOME_SCHEMA, since)

    def close(self) -> None:
        """Close the file."""
        self._db.close()


class LLMLedger(ConfigurableResource):
    """Where the ledger lives, the price table, and the daily budgets that alert and stop.

    Attributes:
        path: The ledger's SQLite file.
        prices: USD per million tokens, per model; a model missing here fails loudly.
        daily_budget_usd: Spend per UTC day, per use case; ``*`` is the total of all.
        warn_fraction: Share of a budget at which a warning goes out before the error at 100 %.
        hard_limit_fraction: Share of a budget at which the gateway refuses the use case's new
            questions until the UTC day ends (429 ``budget_exceeded``; cached answers are still
            served); None: the budgets only alert.
    """

    path: str = Field(description="SQLite file of the cost ledger.")
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
        return CostLedger(self.path, self.prices)

    def hard_limits(self) -> dict[str, float] | None:
        """USD per UTC day at which the gateway stops, per budget key (None: it never stops)."""
        if self.hard_limit_fraction is None:
            return None
        return {
            key: budget * self.hard_limit_fraction for key, budget in self.daily_budget_usd.items()
        }
