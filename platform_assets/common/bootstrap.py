"""What a first model needs on an empty instance: the history to ingest, and in what order.

The ingestion sensor and the bootstrap sensor share this plan so that ``make dev`` alone reaches
a first champion: ingest the first ``BASELINE_DAYS`` of the history and accept them as the first
drift baseline, then ingest the rest (every day judged against that baseline), then train on
``FIRST_TRAINING_DAYS`` matured days whose feature windows are full.
"""

import datetime

from platform_assets.common.partitions import FIRST_BUSINESS_DAY

# The customer features' longest window (features/engineering.py's CUSTOMER_HISTORY).
FEATURE_WINDOW_DAYS = 30
# Matured days the first training set covers.
FIRST_TRAINING_DAYS = 14
# The first days ingested, accepted automatically as the first drift baseline.
BASELINE_DAYS = 3
# A day is requested this long after it ended (the source lands it by 00:30).
LANDING_DELAY = datetime.timedelta(hours=1)


def history_days(maturity_days: int) -> int:
    """Days before today a first model needs: full feature windows, training days, maturity."""
    return FEATURE_WINDOW_DAYS + FIRST_TRAINING_DAYS + maturity_days + 1


def history_start(now: datetime.datetime, maturity_days: int) -> datetime.date:
    """The first day of the history window at ``now``: no earlier day is ingested for it."""
    return max(
        datetime.date.fromisoformat(FIRST_BUSINESS_DAY),
        now.date() - datetime.timedelta(days=history_days(maturity_days)),
    )


def landed_days(now: datetime.datetime, maturity_days: int) -> list[str]:
    """The history window's days that have landed by ``now``, oldest first (partition keys)."""
    first = history_start(now, maturity_days)
    last = (now - LANDING_DELAY).date() - datetime.timedelta(days=1)
    count = (last - first).days + 1
    return [(first + datetime.timedelta(days=n)).isoformat() for n in range(count)]
