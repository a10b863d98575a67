"""Hard daily budgets in the gateway's request path, next to the cost report's alerts.

``llm_cost_report`` alerts at ``warn_fraction`` of a daily budget (``LLMLedger.daily_budget_usd``,
per use case, ``*`` for all together) and again past it. The ``SpendGuard`` stops the spending:
once today's (UTC) spend of a use case, or of all use cases, reaches ``hard_limit_fraction`` of
its budget, the gateway refuses that use case's new questions until the UTC day ends (the HTTP
app answers 429 ``budget_exceeded``). A cached answer costs nothing and is still served.

Today's spend is read from the ledger (every replica and the evaluation write there) at most
every ``refresh_seconds``, and this process's own calls are added in between. Requests already
past the check when the budget is reached still finish, so the spend can pass the limit by
what those cost.
"""

import datetime
import threading
import time
from collections.abc import Callable

from resources.llm.ledger import CostLedger

# The budget key of all use cases together (as in LLMLedger.daily_budget_usd).
TOTAL = "*"


def utc_now() -> datetime.datetime:
    """The current instant, in UTC."""
    return datetime.datetime.now(datetime.UTC)


class BudgetExceeded(RuntimeError):
    """Today's spend has reached a hard limit; the use case's new questions are refused.

    Attributes:
        use_case: The use case whose request was refused.
        budget: The budget that is spent: the use case's, or ``*`` for all use cases.
        spent_usd: Today's spend under that budget.
        limit_usd: The hard limit (budget x ``hard_limit_fraction``).
        retry_after_seconds: Seconds until the UTC day ends and the budget opens again.
    """

    def __init__(
        self,
        use_case: str,
        budget: str,
        spent_usd: float,
        limit_usd: float,
        retry_after_seconds: int,
    ):
        whose = "all use cases" if budget == TOTAL else f"use case {use_case}"
        super().__init__(
            f"The daily budget of {whose} is spent: ${spent_usd:.4f} of ${limit_usd:.4f} today "
            f"(UTC). {use_case} answers new questions again when the UTC day ends (in "
            f"{retry_after_seconds} s) or once LLMLedger.daily_budget_usd[{budget!r}] is "
            "raised; cached answers are still served."
        )
        self.use_case = use_case
        self.budget = budget
        self.spent_usd = spent_usd
        self.limit_usd = limit_usd
        self.retry_after_seconds = retry_after_seconds


class SpendGuard:
    """Today's spend per use case against the hard limits; safe to share between threads.

    Args:
        ledger: Where every call's cost is recorded.
        limits: USD per UTC day, per use case, ``*`` for all use cases together.
        refresh_seconds: How often today's spend is re-read from the ledger.
        now: Monotonic seconds (for ``refresh_seconds``); tests pass a fake.
        today: The current UTC instant (for the day); tests pass a fake.
    """

    def __init__(
        self,
        ledger: CostLedger,
        limits: dict[str, float],
        refresh_seconds: float = 5.0,
        now: Callable[[], float] = time.monotonic,
        today: Callable[[], datetime.datetime] = utc_now,
    ):
        self.ledger = ledger
        self.limits = limits
        self.refresh_seconds = refresh_seconds
        self.now = now
        self.today = today
        self._spent: dict[str, float] = {}
        self._day: datetime.date | None = None
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def _refresh(self, instant: datetime.datetime) -> None:
        """Re-read today's spend from the ledger when due or when the day changed (locked)."""
        day = instant.date()
        if day != self._day or self.now() - self._read_at >= self.refresh_seconds:
            start = datetime.datetime.combine(day, datetime.time(), tzinfo=datetime.UTC)
            self._spent = self.ledger.spend_since(start.isoformat())
            self._day = day
            self._read_at = self.now()

    def check(self, use_case: str) -> None:
        """Raise ``BudgetExceeded`` if ``use_case``'s or the total hard limit is reached."""
        instant = self.today()
        with self._lock:
            self._refresh(instant)
            spent = {use_case: self._spent.get(use_case, 0.0), TOTAL: sum(self._spent.values())}
        for budget in (use_case, TOTAL):
            limit = self.limits.get(budget)
            if limit is not None and spent[budget] > 0 and spent[budget] >= limit:
                midnight = datetime.datetime.combine(
                    instant.date() + datetime.timedelta(days=1), datetime.time(), datetime.UTC
                )
                wait = max(1, int((midnight - instant).total_seconds() + 0.999))
                raise BudgetExceeded(use_case, budget, spent[budget], limit, wait)

    def spent(self, use_case: str, cost_usd: float) -> None:
        """Count a call this process just recorded, until the next re-read of the ledger."""
        with self._lock:
            self._spent[use_case] = self._spent.get(use_case, 0.0) + cost_usd
