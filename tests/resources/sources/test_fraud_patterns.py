"""Behavioural tests of the fraud patterns the card-payments simulator plays out.

Besides its logistic of risk factors, the simulator's normal regime has the patterns real card
data shows: terminals compromised for weeks, compromised cards paying far more than their owner
does, and large amounts. Each test finds the pattern in the generated data itself (the
transactions and the public chargeback feed), using the simulator's ground truth only to know
where to look. A few thousand rows a day over two months keep the module to about a second.
"""

import datetime
from collections.abc import Callable

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from resources.sources.fraud import (
    CARD_COMPROMISE_DAYS,
    LARGE_AMOUNT_THRESHOLD,
    TERMINAL_COMPROMISE_DAYS,
)
from resources.sources.incidents import Scenario
from resources.sources.simulator import CardPaymentsSimulator

pytestmark = pytest.mark.unit

ONE_DAY = datetime.timedelta(days=1)
FIRST = datetime.date(2024, 3, 6)
ROWS = 3_000
LABEL_DELAY = 7  # labels of every transaction are in within a week


def _simulator(scenarios: tuple[Scenario, ...] = ()) -> CardPaymentsSimulator:
    return CardPaymentsSimulator(
        rows_per_day=ROWS, max_label_delay_days=LABEL_DELAY, scenarios=scenarios
    )


def _days(first: datetime.date, count: int) -> list[datetime.date]:
    return [first + k * ONE_DAY for k in range(count)]


def _first_onset(compromised: Callable[[datetime.date], np.ndarray]) -> tuple[datetime.date, int]:
    """The first day from FIRST on when a merchant or customer becomes compromised, and its id."""
    for day in _days(FIRST, 200):
        new = np.setdiff1d(compromised(day), compromised(day - ONE_DAY))
        if new.size:
            return day, int(new[0])
    raise AssertionError("nothing compromised in 200 days")


def _labelled(sim: CardPaymentsSimulator, days: list[datetime.date]) -> pl.DataFrame:
    """The transactions of ``days`` with their day and whether they were charged back."""
    report_days = sorted({d + k * ONE_DAY for d in days for k in range(1, LABEL_DELAY + 1)})
    charged_back = pl.concat([sim.chargebacks(d) for d in report_days])["transaction_id"]
    return pl.concat([sim.day(d).transactions for d in days]).with_columns(
        day=pl.col("event_timestamp").dt.date(),
        fraud=pl.col("transaction_id").is_in(charged_back.implode()),
    )


@pytest.fixture(scope="module")
def onset() -> tuple[datetime.date, int]:
    return _first_onset(_simulator().compromised_merchants)


@pytest.fixture(scope="module")
def frame(onset: tuple[datetime.date, int]) -> pl.DataFrame:
    """Two weeks before the terminal's compromise to two weeks after it."""
    start, _ = onset
    return _labelled(_simulator(), _days(start - 14 * ONE_DAY, TERMINAL_COMPROMISE_DAYS + 28))


def _fraud_rate(frame: pl.DataFrame, predicate: pl.Expr | None = None) -> float:
    selected = frame if predicate is None else frame.filter(predicate)
    assert selected.height >= 100, "too few payments to measure a rate"
    return selected.select(pl.col("fraud").mean()).item()


def _between(first: datetime.date, end: datetime.date) -> pl.Expr:
    return (pl.col("day") >= first) & (pl.col("day") < end)


# --- compromised terminals ---------------------------------------------------------------------


def test_a_terminal_stays_compromised_for_four_weeks(onset: tuple[datetime.date, int]) -> None:
    start, merchant = onset
    sim = _simulator()

    def compromised(day: datetime.date) -> bool:
        return merchant in sim.compromised_merchants(day)

    assert TERMINAL_COMPROMISE_DAYS >= 21  # weeks, longer than the labels take to mature
    assert not compromised(start - ONE_DAY)
    assert all(compromised(start + k * ONE_DAY) for k in range(TERMINAL_COMPROMISE_DAYS))
    assert not compromised(start + TERMINAL_COMPROMISE_DAYS * ONE_DAY)


def test_a_compromised_terminal_is_defrauded_all_its_weeks_and_only_then(
    onset: tuple[datetime.date, int], frame: pl.DataFrame
) -> None:
    start, merchant = onset
    end = start + TERMINAL_COMPROMISE_DAYS * ONE_DAY
    at_terminal = pl.col("merchant_id") == merchant
    ever = np.unique(
        np.concatenate([_simulator().compromised_merchants(d) for d in frame["day"].unique()])
    )
    others = _fraud_rate(frame, ~pl.col("merchant_id").is_in(ever.tolist()))

    first_week = _fraud_rate(frame, at_terminal & _between(start, start + 7 * ONE_DAY))
    fourth_week = _fraud_rate(frame, at_terminal & _between(start + 20 * ONE_DAY, end))
    assert first_week > 0.08
    assert fourth_week > 0.08
    assert min(first_week, fourth_week) > 10 * others
    # Before and after the compromise, the merchant is an ordinary one.
    assert _fraud_rate(frame, at_terminal & (pl.col("day") < start)) < 3 * others + 0.01
    assert _fraud_rate(frame, at_terminal & (pl.col("day") >= end)) < 3 * others + 0.01


def test_a_few_terminals_are_compromised_each_day_in_a_large_population() -> None:
    sim = CardPaymentsSimulator(rows_per_day=1_000_000)  # only the population is built
    days = _days(FIRST, 2 * TERMINAL_COMPROMISE_DAYS)
    compromised = {d: set(sim.compromised_merchants(d).tolist()) for d in days}
    new_per_day = [len(compromised[d] - compromised[d - ONE_DAY]) for d in days[1:]]

    assert min(new_per_day) >= 1
    assert max(new_per_day) <= 5
    merchants = 5_000  # rows_per_day // 200
    assert 0.005 * merchants < len(compromised[days[-1]]) < 0.03 * merchants


# --- compromised cards ---------------------------------------------------------------------------


def _with_card_compromise(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with ``compromised``: whether the payer's card was compromised that day."""
    sim = _simulator()
    pairs = pl.DataFrame(
        [
            {"customer_id": int(customer), "day": day}
            for day in frame["day"].unique()
            for customer in sim.compromised_customers(day)
        ]
    )
    return frame.join(
        pairs.with_columns(compromised=pl.lit(True)), on=["customer_id", "day"], how="left"
    ).with_columns(pl.col("compromised").fill_null(False))


def test_a_card_stays_compromised_for_two_weeks() -> None:
    sim = _simulator()
    start, customer = _first_onset(sim.compromised_customers)

    def compromised(day: datetime.date) -> bool:
        return customer in sim.compromised_customers(day)

    assert 7 <= CARD_COMPROMISE_DAYS < TERMINAL_COMPROMISE_DAYS
    assert not compromised(start - ONE_DAY)
    assert all(compromised(start + k * ONE_DAY) for k in range(CARD_COMPROMISE_DAYS))
    assert not compromised(start + CARD_COMPROMISE_DAYS * ONE_DAY)


def test_compromised_cards_pay_far_more_than_their_owners_usually_do(frame: pl.DataFrame) -> None:
    frame = _with_card_compromise(frame)
    compromised = pl.col("compromised")
    assert frame.filter(compromised).select(pl.col("customer_id").n_unique()).item() >= 10

    # Some of a compromised card's payments are fraud, far more than elsewhere, but not all.
    during = _fraud_rate(frame, compromised)
    assert during > 10 * _fraud_rate(frame, ~compromised)
    assert during < 0.6

    usual = (
        frame.filter(~compromised & ~pl.col("fraud"))
        .group_by("customer_id")
        .agg(usual=pl.col("amount").median())
    )
    ratio = (
        frame.filter(compromised)
        .join(usual, on="customer_id")
        .with_columns(ratio=pl.col("amount") / pl.col("usual"))
    )
    median = pl.col("ratio").median()
    assert ratio.filter("fraud").height >= 50
    # The fraudster spends several times what the owner does; the owner keeps spending as usual.
    assert ratio.filter("fraud").select(median).item() > 3.0
    assert 0.5 < ratio.filter(~pl.col("fraud")).select(median).item() < 2.0


# --- large amounts -------------------------------------------------------------------------------


def test_payments_above_the_threshold_are_far_more_often_fraud(frame: pl.DataFrame) -> None:
    amount = pl.col("amount")
    above = _fraud_rate(frame, amount > LARGE_AMOUNT_THRESHOLD)
    assert above > 10 * _fraud_rate(frame, amount <= LARGE_AMOUNT_THRESHOLD)
    # A step at the threshold, beyond the smooth rise with the amount relative to the customer.
    just_below = _fraud_rate(
        frame, amount.is_between(0.8 * LARGE_AMOUNT_THRESHOLD, LARGE_AMOUNT_THRESHOLD)
    )
    just_above = _fraud_rate(
        frame, (amount > LARGE_AMOUNT_THRESHOLD) & (amount <= 1.25 * LARGE_AMOUNT_THRESHOLD)
    )
    assert just_above > 2 * just_below


def test_the_threshold_is_a_high_percentile_of_amounts(frame: pl.DataFrame) -> None:
    share_above = frame.select((pl.col("amount") > LARGE_AMOUNT_THRESHOLD).mean()).item()
    assert 0.002 < share_above < 0.03


# --- the patterns under concept drift and the determinism contract -----------------------------


def test_the_patterns_fade_under_concept_drift(
    onset: tuple[datetime.date, int], frame: pl.DataFrame
) -> None:
    start, merchant = onset
    days = _days(start, TERMINAL_COMPROMISE_DAYS)
    drift = Scenario("concept_drift", days[0], days[-1], 1.0)
    drifted = _with_card_compromise(_labelled(_simulator((drift,)), days))
    normal = _with_card_compromise(frame.filter(pl.col("day").is_in(days)))

    # Concept drift keeps the covariates, the compromised cards' large payments included...
    assert_frame_equal(drifted.drop("fraud"), normal.drop("fraud"))
    # ...but compromised terminals and cards and large amounts no longer mean fraud.
    others = _fraud_rate(drifted)
    for pattern in (
        pl.col("merchant_id") == merchant,
        pl.col("compromised"),
        pl.col("amount") > LARGE_AMOUNT_THRESHOLD,
    ):
        assert _fraud_rate(normal, pattern) > 5 * _fraud_rate(normal)
        assert _fraud_rate(drifted, pattern) < 3 * others


def test_a_day_within_compromises_is_the_same_generated_alone(
    onset: tuple[datetime.date, int],
) -> None:
    start, _ = onset
    day = start + 20 * ONE_DAY
    warm = _simulator()
    for earlier in _days(day - 40 * ONE_DAY, 40):
        warm.day(earlier)
    alone = _simulator()

    assert_frame_equal(alone.day(day).transactions, warm.day(day).transactions)
    assert_frame_equal(alone.chargebacks(day + ONE_DAY), warm.chargebacks(day + ONE_DAY))
    assert np.array_equal(alone.compromised_merchants(day), warm.compromised_merchants(day))
    assert np.array_equal(alone.compromised_customers(day), warm.compromised_customers(day))
    assert warm.compromised_merchants(day).size > 0
