"""The demo's live traffic is a fair sample of the simulated present: the day's rhythm kept.

The canary is judged on it against the model's holdout, which has the day's rhythm (few payments
at night); traffic thinned to a fixed count a second over-sent the night five to ten times.
"""

import datetime

import polars as pl
import pytest

from resources.sources.systems import SimulatedSource
from serving.model.replayer import simulated_payments, thinned

pytestmark = pytest.mark.unit

DAY = datetime.date(2026, 3, 10)
# make demo's short story: 1.5 simulated days a real minute, a send every real second.
SEND_EVERY = datetime.timedelta(days=1.5) / 60
RATE = 30.0


def hour_shares(payments: pl.DataFrame) -> dict[int, float]:
    counts = payments["event_timestamp"].dt.hour().value_counts(normalize=True)
    return dict(zip(*counts.get_columns(), strict=True))


def test_a_day_of_sends_keeps_the_days_hours_and_the_rate():
    day = simulated_payments(SimulatedSource(rows_per_day=10_000), [DAY.isoformat()])
    midnight = datetime.datetime.combine(DAY, datetime.time(), tzinfo=datetime.UTC)
    sends = [
        thinned(day, midnight + i * SEND_EVERY, midnight + (i + 1) * SEND_EVERY, allowed=RATE)
        for i in range(round(datetime.timedelta(days=1) / SEND_EVERY))
    ]
    sent = pl.concat(sends)

    assert sent.height == pytest.approx(RATE * len(sends), rel=0.05)
    whole, sample = hour_shares(day), hour_shares(sent)
    assert max(abs(sample.get(hour, 0.0) - share) for hour, share in whole.items()) < 0.01
    night = [hour for hour in whole if hour < 6]
    assert sum(sample[h] for h in night) == pytest.approx(sum(whole[h] for h in night), abs=0.01)


def test_nothing_is_sent_when_the_rate_allows_less_than_one_payment():
    day = simulated_payments(SimulatedSource(rows_per_day=1_000), [DAY.isoformat()])
    noon = datetime.datetime.combine(DAY, datetime.time(12), tzinfo=datetime.UTC)

    assert thinned(day, noon, noon + SEND_EVERY, allowed=0.5).is_empty()
