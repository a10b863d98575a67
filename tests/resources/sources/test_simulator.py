"""Behavioural tests for the card-payments simulator, the platform's default source system.

Everything downstream (contracts, quality checks, drift monitors, label joins) is graded against
the simulator's ground truth, so these tests pin that the ground truth is exactly right and that
every scenario does what it says. Volumes are small to keep the suite fast.
"""

import datetime
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from resources.environments import PROJECT_ROOT
from resources.sources.fraud import fraud_probability
from resources.sources.incidents import DRIFT_KINDS, INCIDENT_KINDS, Scenario
from resources.sources.schema import (
    CHANNELS,
    CHARGEBACK_COLUMNS,
    CHARGEBACK_SCHEMA,
    COUNTRIES,
    CURRENCIES,
    MAX_AMOUNT,
    MERCHANT_CATEGORIES,
    TRANSACTION_COLUMNS,
    TRANSACTION_SCHEMA,
)
from resources.sources.simulator import CardPaymentsSimulator, SimulatedDay

pytestmark = pytest.mark.unit

DAY = datetime.date(2024, 3, 6)
ONE_DAY = datetime.timedelta(days=1)


def _scenario_day(kind: str, intensity: float = 0.1, rows_per_day: int = 2_000) -> SimulatedDay:
    return CardPaymentsSimulator(
        rows_per_day=rows_per_day, scenarios=[Scenario(kind, DAY, DAY, intensity)]
    ).day(DAY)


def _clean(rows_per_day: int = 2_000) -> pl.DataFrame:
    return CardPaymentsSimulator(rows_per_day=rows_per_day).day(DAY).transactions


def _bad_rows(simulated: SimulatedDay, incident: str) -> list[int]:
    return (
        simulated.injected_bad_rows.filter(pl.col("incident") == incident)["row"].sort().to_list()
    )


def _rows_where(frame: pl.DataFrame, predicate: pl.Expr) -> list[int]:
    return frame.select(predicate.fill_null(False).alias("hit"))["hit"].arg_true().to_list()


def _median_amount(frame: pl.DataFrame) -> float:
    return frame.select(pl.col("amount").median()).item()


def _fraud_rows(sim: CardPaymentsSimulator, days: list[datetime.date]) -> pl.DataFrame:
    """The transactions of ``days`` that were charged back, via the public chargeback feed."""
    report_days = {
        d + datetime.timedelta(k) for d in days for k in range(1, 1 + sim.max_label_delay_days)
    }
    reports = pl.concat([sim.chargebacks(d) for d in sorted(report_days)])
    transactions = pl.concat([sim.day(d).transactions for d in days])
    return transactions.join(reports.select("transaction_id"), on="transaction_id", how="semi")


# --- the clean source --------------------------------------------------------------------------


def test_clean_day_matches_the_contract() -> None:
    simulated = CardPaymentsSimulator().day(DAY)
    frame = simulated.transactions

    assert tuple(frame.columns) == TRANSACTION_COLUMNS
    assert frame.schema == pl.Schema(TRANSACTION_SCHEMA)
    assert frame.null_count().sum_horizontal().item() == 0
    assert set(frame["currency"]) <= set(CURRENCIES)
    assert set(frame["merchant_category"]) <= set(MERCHANT_CATEGORIES)
    assert set(frame["channel"]) <= set(CHANNELS)
    assert set(frame["channel"]) >= {"pos", "contactless", "online"}
    assert set(frame["country"]) <= set(COUNTRIES)
    assert ((frame["amount"] > 0) & (frame["amount"] <= MAX_AMOUNT)).all()
    cents = frame["amount"] * 100
    assert ((cents - cents.round()).abs() < 1e-6).all()
    assert frame["event_timestamp"].is_sorted()
    assert set(frame["event_timestamp"].dt.date()) == {DAY}
    assert frame["transaction_id"].is_unique().all()
    assert simulated.injected_bad_rows.is_empty()
    assert simulated.injected_bad_rows.schema == pl.Schema(
        {"row": pl.get_index_type(), "incident": pl.String}
    )


def test_normal_availability_is_next_day_half_past_midnight_utc() -> None:
    available_at = CardPaymentsSimulator().day(DAY).available_at
    assert available_at == datetime.datetime(2024, 3, 7, 0, 30, tzinfo=datetime.UTC)
    assert available_at is not None
    assert available_at.utcoffset() == datetime.timedelta(0)


def test_volume_varies_a_few_percent_around_rows_per_day() -> None:
    sim = CardPaymentsSimulator(rows_per_day=5_000)
    heights = [sim.day(DAY + k * ONE_DAY).transactions.height for k in range(14)]
    assert all(4_500 <= h <= 5_500 for h in heights)
    assert len(set(heights)) > 1


def test_transaction_ids_are_unique_across_days() -> None:
    sim = CardPaymentsSimulator(rows_per_day=500)
    frames = [sim.day(DAY + k * ONE_DAY).transactions for k in range(10)]
    assert pl.concat(frames)["transaction_id"].is_unique().all()


def test_same_seed_and_date_give_identical_frames_whatever_the_call_order() -> None:
    days = [DAY + k * ONE_DAY for k in range(3)]
    forward = CardPaymentsSimulator(seed=11, rows_per_day=1_000)
    backward = CardPaymentsSimulator(seed=11, rows_per_day=1_000)
    backward.chargebacks(days[-1] + 5 * ONE_DAY)  # touch unrelated days first
    first = {d: forward.day(d).transactions for d in days}
    second = {d: backward.day(d).transactions for d in reversed(days)}
    for d in days:
        assert_frame_equal(first[d], second[d])
    assert_frame_equal(forward.day(days[0]).transactions, first[days[0]])


def test_same_seed_and_date_give_identical_frames_in_another_process() -> None:
    code = (
        "import datetime, sys\n"
        "from resources.sources.simulator import CardPaymentsSimulator\n"
        "frame = CardPaymentsSimulator(seed=3, rows_per_day=300).day(datetime.date(2024, 3, 6))\n"
        "sys.stdout.write(frame.transactions.write_csv())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    here = CardPaymentsSimulator(seed=3, rows_per_day=300).day(DAY).transactions.write_csv()
    assert result.stdout == here


def test_different_seeds_give_different_days() -> None:
    a = CardPaymentsSimulator(seed=1).day(DAY).transactions
    b = CardPaymentsSimulator(seed=2).day(DAY).transactions
    assert not a.equals(b)


def test_customers_have_stable_behaviour_across_days() -> None:
    sim = CardPaymentsSimulator(rows_per_day=4_000)
    frame = pl.concat([sim.day(DAY + k * ONE_DAY).transactions for k in range(7)])
    # Customers shop mostly in their home country...
    per_customer = frame.group_by("customer_id", "country").len().sort("len", descending=True)
    home_share = per_customer.group_by("customer_id").agg(pl.col("len").max() / pl.col("len").sum())
    assert home_share.select(pl.col("len").mean()).item() > 0.85
    # ...and activity is heavy-tailed: the busiest customers are far busier than the median one.
    activity = frame.group_by("customer_id").len()
    assert activity.select(pl.col("len").max() > 10 * pl.col("len").median()).item()


def test_hour_of_day_profile_has_quiet_nights() -> None:
    hours = _clean(rows_per_day=10_000)["event_timestamp"].dt.hour()
    assert (hours < 6).sum() * 3 < ((hours >= 12) & (hours < 18)).sum()


# --- scenarios -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "meteor_strike"}, "kind"),
        ({"end": DAY - ONE_DAY}, "end"),
        ({"intensity": 1.5}, "intensity"),
        ({"intensity": -0.1}, "intensity"),
        ({"intensity": float("nan")}, "intensity"),
    ],
)
def test_invalid_scenarios_are_rejected_naming_the_field(kwargs: dict, field: str) -> None:
    arguments = {"kind": "null_spike", "start": DAY, "end": DAY, "intensity": 0.1} | kwargs
    with pytest.raises(ValueError, match=field):
        Scenario(**arguments)


def test_scenario_dates_must_be_dates() -> None:
    with pytest.raises(TypeError, match="start"):
        Scenario("null_spike", datetime.datetime(2024, 3, 6), DAY, 0.1)  # type: ignore[arg-type]


def test_every_kind_is_accepted_and_late_partition_takes_hours() -> None:
    for kind in INCIDENT_KINDS + DRIFT_KINDS:
        Scenario(kind, DAY, DAY, 0.5)
    assert Scenario("late_partition", DAY, DAY, 36).intensity == 36


def test_scenario_is_active_on_its_inclusive_date_range() -> None:
    scenario = Scenario("volume_drop", DAY, DAY + 2 * ONE_DAY, 0.5)
    assert not scenario.active_on(DAY - ONE_DAY)
    assert scenario.active_on(DAY)
    assert scenario.active_on(DAY + 2 * ONE_DAY)
    assert not scenario.active_on(DAY + 3 * ONE_DAY)


def test_days_outside_a_scenario_are_clean() -> None:
    sim = CardPaymentsSimulator(scenarios=[Scenario("null_spike", DAY, DAY, 0.5)])
    other_day = sim.day(DAY + ONE_DAY)
    assert_frame_equal(
        other_day.transactions, CardPaymentsSimulator().day(DAY + ONE_DAY).transactions
    )
    assert other_day.injected_bad_rows.is_empty()


def test_null_spike_nulls_exactly_the_listed_rows() -> None:
    simulated = _scenario_day("null_spike", 0.1)
    frame, clean = simulated.transactions, _clean()
    listed = _bad_rows(simulated, "null_spike")

    nulled = pl.col("merchant_category").is_null() | pl.col("country").is_null()
    assert _rows_where(frame, nulled) == listed
    assert len(listed) == round(0.1 * clean.height)
    assert frame["merchant_category"].null_count() > 0
    assert frame["country"].null_count() > 0
    assert_frame_equal(
        frame.drop("merchant_category", "country"), clean.drop("merchant_category", "country")
    )


def test_out_of_range_corrupts_exactly_the_listed_rows() -> None:
    simulated = _scenario_day("out_of_range", 0.05)
    frame, clean = simulated.transactions, _clean()
    listed = _bad_rows(simulated, "out_of_range")

    out_of_range = (pl.col("amount") <= 0) | (pl.col("amount") > MAX_AMOUNT)
    assert _rows_where(frame, out_of_range) == listed
    assert len(listed) == round(0.05 * clean.height)
    assert (frame["amount"] <= 0).any()
    assert (frame["amount"] > MAX_AMOUNT).any()
    assert_frame_equal(frame.drop("amount"), clean.drop("amount"))


def test_duplicates_insert_exact_copies_after_their_originals() -> None:
    simulated = _scenario_day("duplicates", 0.1)
    frame, clean = simulated.transactions, _clean()
    listed = _bad_rows(simulated, "duplicates")

    assert frame.height == clean.height + round(0.1 * clean.height)
    assert len(listed) == frame.height - clean.height
    same_as_previous = pl.all_horizontal(pl.all() == pl.all().shift(1)).fill_null(False)
    assert _rows_where(frame, same_as_previous) == listed
    without_copies = frame.with_row_index("row").filter(~pl.col("row").is_in(listed)).drop("row")
    assert_frame_equal(without_copies, clean)


def test_volume_drop_delivers_the_remaining_share_of_rows_in_order() -> None:
    simulated = _scenario_day("volume_drop", 0.6)
    frame, clean = simulated.transactions, _clean()

    assert frame.height == round(0.4 * clean.height)
    assert_frame_equal(
        frame, clean.join(frame.select("transaction_id"), on="transaction_id", how="semi")
    )
    assert simulated.injected_bad_rows.is_empty()


def test_schema_change_renames_amount_to_integer_cents() -> None:
    frame, clean = _scenario_day("schema_change").transactions, _clean()
    assert "amount" not in frame.columns
    assert frame.columns.index("amount_cents") == TRANSACTION_COLUMNS.index("amount")
    assert frame.schema["amount_cents"] == pl.Int64
    assert (
        frame["amount_cents"].to_list() == (clean["amount"] * 100).round().cast(pl.Int64).to_list()
    )


@pytest.mark.parametrize("kind", ["schema_change", "missing_partition", "null_spike"])
def test_live_payments_are_the_clean_day_whatever_the_batch_incident(kind: str) -> None:
    sim = CardPaymentsSimulator(rows_per_day=2_000, scenarios=[Scenario(kind, DAY, DAY, 0.1)])
    assert_frame_equal(sim.payments(DAY), _clean())


def test_late_partition_is_delayed_by_intensity_hours() -> None:
    simulated = _scenario_day("late_partition", 6.5)
    normal = datetime.datetime(2024, 3, 7, 0, 30, tzinfo=datetime.UTC)
    assert simulated.available_at == normal + datetime.timedelta(hours=6.5)
    assert_frame_equal(simulated.transactions, _clean())


def test_missing_partition_never_arrives() -> None:
    simulated = _scenario_day("missing_partition")
    assert simulated.available_at is None
    assert simulated.transactions.is_empty()
    assert simulated.transactions.schema == pl.Schema(TRANSACTION_SCHEMA)
    assert simulated.injected_bad_rows.is_empty()


def test_combined_incidents_keep_the_ground_truth_exact() -> None:
    kinds = {"volume_drop": 0.3, "null_spike": 0.1, "out_of_range": 0.1, "duplicates": 0.2}
    scenarios = [Scenario(kind, DAY, DAY, i) for kind, i in kinds.items()]
    scenarios.append(Scenario("schema_change", DAY, DAY, 0.0))
    simulated = CardPaymentsSimulator(scenarios=scenarios).day(DAY)
    frame = simulated.transactions

    assert "amount_cents" in frame.columns
    nulled = pl.col("merchant_category").is_null() | pl.col("country").is_null()
    out_of_range = (pl.col("amount_cents") <= 0) | (pl.col("amount_cents") > MAX_AMOUNT * 100)
    same_as_previous = pl.all_horizontal(pl.all() == pl.all().shift(1)).fill_null(False)
    assert _rows_where(frame, nulled) == _bad_rows(simulated, "null_spike")
    assert _rows_where(frame, out_of_range) == _bad_rows(simulated, "out_of_range")
    # Null never equals null, so compare duplicates on ids: a copy repeats its original's id.
    is_copy = pl.col("transaction_id") == pl.col("transaction_id").shift(1)
    assert _rows_where(frame, is_copy) == _bad_rows(simulated, "duplicates")
    assert _rows_where(frame, same_as_previous) == _rows_where(
        frame, is_copy & ~nulled
    )  # copies are exact, nulls aside
    bad = simulated.injected_bad_rows
    assert bad.select("row", "incident").is_unique().all()
    assert bad.schema == pl.Schema({"row": pl.get_index_type(), "incident": pl.String})


def test_covariate_drift_moves_amounts_and_channel_mix() -> None:
    clean = _clean(rows_per_day=5_000)
    drifted = _scenario_day("covariate_drift", 0.5, rows_per_day=5_000).transactions

    assert _median_amount(drifted) > 1.8 * _median_amount(clean)
    online = (pl.col("channel") == "online").mean()
    assert drifted.select(online).item() > clean.select(online).item() + 0.15
    domestic = (pl.col("country") == "US").mean()
    assert drifted.select(domestic).item() < clean.select(domestic).item() - 0.05
    assert (drifted["amount"] <= MAX_AMOUNT).all()


def test_concept_drift_keeps_covariates_but_changes_the_fraud_pattern() -> None:
    days = [DAY + k * ONE_DAY for k in range(3)]
    normal = CardPaymentsSimulator(rows_per_day=20_000, max_label_delay_days=7)
    drift = Scenario("concept_drift", days[0], days[-1], 1.0)
    drifted = CardPaymentsSimulator(rows_per_day=20_000, max_label_delay_days=7, scenarios=[drift])

    assert_frame_equal(drifted.day(DAY).transactions, normal.day(DAY).transactions)
    night = (pl.col("event_timestamp").dt.hour() < 6).mean()
    normal_fraud, drifted_fraud = _fraud_rows(normal, days), _fraud_rows(drifted, days)
    assert normal_fraud.height > 100
    assert drifted_fraud.height > 100
    # Half the drifted frauds happen at night, where 3 % of payments are; far fewer before.
    assert drifted_fraud.select(night).item() > 0.35
    assert drifted_fraud.select(night).item() > normal_fraud.select(night).item() + 0.25
    # The amount no longer matters: drifted frauds are ordinary-sized payments.
    assert _median_amount(drifted_fraud) < 0.6 * _median_amount(normal_fraud)


def test_fraud_probability_never_decreases_with_the_amount() -> None:
    rng = np.random.default_rng(0)
    n = 500
    ratios = np.geomspace(0.01, 1_000, 200, dtype=np.float32)
    typical = rng.lognormal(np.log(30.0), 0.8, n)  # the amounts cross the large-amount threshold
    features = {
        "foreign": rng.random(n) < 0.2,
        "channel": rng.integers(0, len(CHANNELS), n),
        "night": rng.random(n) < 0.3,
        "merchant_risk": rng.random(n).astype(np.float32),
    }
    curves = np.stack(
        [fraud_probability(np.full(n, r), amount=r * typical, **features) for r in ratios]
    )
    assert (np.diff(curves, axis=0) >= 0).all()
    assert (curves[-1] > curves[0]).all()
    assert ((curves > 0) & (curves < 1)).all()


# --- chargebacks -------------------------------------------------------------------------------


def test_chargebacks_are_reported_on_the_day_after_their_transaction() -> None:
    sim = CardPaymentsSimulator(rows_per_day=3_000)
    report_day = DAY + 40 * ONE_DAY
    reports = sim.chargebacks(report_day)

    assert tuple(reports.columns) == CHARGEBACK_COLUMNS
    assert reports.schema == pl.Schema(CHARGEBACK_SCHEMA)
    assert reports.height > 0
    assert set(reports["reported_at"].dt.date()) == {report_day}
    assert (reports["reported_at"] > reports["transaction_timestamp"]).all()
    lag = report_day - reports["transaction_timestamp"].dt.date()
    assert ((lag >= datetime.timedelta(days=1)) & (lag <= datetime.timedelta(days=30))).all()
    assert reports["reported_at"].is_sorted()


def test_chargebacks_refer_to_existing_transactions() -> None:
    sim = CardPaymentsSimulator(rows_per_day=3_000, max_label_delay_days=10)
    report_day = DAY + 10 * ONE_DAY
    reports = sim.chargebacks(report_day)
    transactions = pl.concat([sim.day(report_day - k * ONE_DAY).transactions for k in range(1, 11)])

    matched = reports.join(transactions, on="transaction_id", how="inner", suffix="_tx")
    assert matched.height == reports.height
    assert (matched["customer_id"] == matched["customer_id_tx"]).all()
    assert (matched["transaction_timestamp"] == matched["event_timestamp"]).all()


def test_fraud_rate_is_plausible_and_labels_arrive_mostly_within_two_weeks() -> None:
    sim = CardPaymentsSimulator(rows_per_day=20_000)
    reports = pl.concat([sim.chargebacks(DAY + k * ONE_DAY) for k in range(1, 31)])
    of_day = reports.filter(pl.col("transaction_timestamp").dt.date() == DAY)
    rate = of_day.height / sim.day(DAY).transactions.height

    assert 0.003 < rate < 0.015
    delay_days = (of_day["reported_at"].dt.date() - DAY).dt.total_days()
    assert (delay_days <= 14).sum() > 0.8 * delay_days.len()
    assert (delay_days >= 1).all()


def test_chargebacks_refer_to_the_clean_transactions_despite_incidents() -> None:
    incidents = [
        Scenario(kind, DAY - 20 * ONE_DAY, DAY, 0.5)
        for kind in ("volume_drop", "missing_partition", "out_of_range", "schema_change")
    ]
    with_incidents = CardPaymentsSimulator(scenarios=incidents)
    assert_frame_equal(with_incidents.chargebacks(DAY), CardPaymentsSimulator().chargebacks(DAY))


def test_chargebacks_are_deterministic_whatever_was_generated_before() -> None:
    warm = CardPaymentsSimulator(seed=5)
    for k in range(-5, 5):
        warm.day(DAY + k * ONE_DAY)
    warm.chargebacks(DAY - ONE_DAY)
    assert_frame_equal(warm.chargebacks(DAY), CardPaymentsSimulator(seed=5).chargebacks(DAY))
