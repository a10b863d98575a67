"""The incremental customer rows equal the definition's, on the simulator's payments.

``customer_features_incremental`` reads a day, the days its windows' edges fall in and one row
per customer and day of the month before (``customer_daily_activity``); ``customer_features``
recomputes every window from 30 days of raw payments. Both must give the same rows: integers,
strings and nulls exactly, floats within a relative 1e-9 (the parts are summed in another order;
on these days the largest difference seen is about 3e-15).
"""

import datetime

import polars as pl
import pytest

from platform_assets.features import engineering as fe
from platform_assets.features.sharding import customer_features_sharded
from resources.sources.simulator import CardPaymentsSimulator

pytestmark = pytest.mark.unit

FIRST = datetime.date(2026, 3, 1)
DAYS = [FIRST + datetime.timedelta(days=n) for n in range(36)]
HALTED = DAYS[20]  # a day the contract halted: neither path has its payments
RELATIVE_TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def payments() -> dict[datetime.date, pl.DataFrame]:
    simulator = CardPaymentsSimulator(seed=11, rows_per_day=1_500)
    return {day: simulator.day(day).transactions for day in DAYS if day != HALTED}


def both_paths(
    payments: dict[datetime.date, pl.DataFrame], day: datetime.date
) -> tuple[pl.DataFrame, pl.DataFrame]:
    def of(days: list[datetime.date]) -> pl.LazyFrame:
        return pl.concat([payments[d] for d in days if d in payments]).lazy()

    definition = fe.customer_features(of(fe.customer_history_days([day])), [day])
    activity = pl.concat(
        [
            fe.customer_daily_activity(of([d]))
            for d in fe.customer_activity_days(day)
            if d in payments
        ]
        or [pl.DataFrame(schema=fe.CUSTOMER_ACTIVITY_SCHEMA)]
    )
    incremental = fe.customer_features_incremental(
        of(fe.customer_edge_days(day)), activity.lazy(), day
    )
    return definition, incremental


def assert_same_rows(
    definition: pl.DataFrame, incremental: pl.DataFrame, min_rows: int = 1_000
) -> None:
    assert incremental.schema == definition.schema
    assert incremental.height == definition.height >= min_rows
    for name, dtype in definition.schema.items():
        expected, actual = definition[name], incremental[name]
        assert (expected.is_null() == actual.is_null()).all(), name
        if dtype.is_float():
            scale = expected.abs().clip(lower_bound=1.0)
            assert ((expected - actual).abs() / scale).max() <= RELATIVE_TOLERANCE, name  # type: ignore[operator]
        else:
            assert expected.equals(actual), name


@pytest.mark.parametrize(
    "day",
    [
        DAYS[0],  # no history at all
        DAYS[5],  # windows reaching before the first day
        DAYS[21],  # the day after the halted day
        DAYS[27],  # the 7-day window's first day is the halted one
        DAYS[-1],  # every window full
    ],
    ids=str,
)
def test_incremental_rows_equal_the_definition(payments, day):
    assert_same_rows(*both_paths(payments, day))


def test_the_window_edges_are_the_definitions_to_the_microsecond():
    """Payments exactly 7 and 30 days before a payment are outside its windows, a microsecond
    later inside; the same instant twice counts twice; amounts are powers of two, so a sum
    names the payments in it."""
    day = datetime.date(2026, 3, 31)
    noon = fe.day_start(day) + datetime.timedelta(hours=12)
    at = [
        noon - datetime.timedelta(days=30),
        noon - datetime.timedelta(days=30, microseconds=-1),
        noon - datetime.timedelta(days=7),
        noon - datetime.timedelta(days=7, microseconds=-1),
        noon - datetime.timedelta(days=7, microseconds=-1),
        noon - datetime.timedelta(days=3),
        noon,
        noon,
        noon + datetime.timedelta(microseconds=1),
    ]
    frame = pl.DataFrame(
        {
            "transaction_id": range(len(at)),
            "customer_id": [1] * len(at),
            "merchant_id": [5] * len(at),
            "amount": [float(2**n) for n in range(len(at))],
            "country": ["FR"] * len(at),
            fe.TIMESTAMP: at,
        },
        schema_overrides={fe.TIMESTAMP: pl.Datetime("us", "UTC")},
    )
    payments = {d: frame.filter(pl.col(fe.TIMESTAMP).dt.date() == d) for d in DAYS + [day]}
    definition, incremental = both_paths(payments, day)
    # Windows are (t - 7 days, t]: the payments a microsecond after noon 7 days back count at
    # noon and not a microsecond after it.
    assert definition["txn_count_7d"].to_list() == [5, 5, 4]
    assert definition["txn_count_30d"].to_list() == [7, 7, 7]
    assert_same_rows(definition, incremental, min_rows=3)


def test_incremental_rows_equal_the_definition_without_a_country(payments):
    """A dataset without a country: no home country on either path, the rest equal."""
    countryless = {day: frame.drop("country") for day, frame in payments.items()}
    definition, incremental = both_paths(countryless, DAYS[-1])
    assert definition["home_country"].null_count() == definition.height
    assert_same_rows(definition, incremental)


def test_daily_activity_keeps_each_days_counts_sums_and_spread(payments):
    day = DAYS[3]
    activity = fe.customer_daily_activity(payments[day].lazy())
    assert activity.schema == fe.CUSTOMER_ACTIVITY_SCHEMA
    assert activity["transactions"].sum() == payments[day].height
    one = activity.row(0, named=True)
    own = payments[day].filter(
        pl.col("customer_id") == one["customer_id"], pl.col("country") == one["country"]
    )["amount"]
    assert one["amount_sum"] == pytest.approx(own.sum())
    assert one["amount_m2"] == pytest.approx(own.var(ddof=0) * own.len())  # type: ignore[operator]
    assert one["amount_max"] == own.max()


def test_a_day_in_shards_on_a_dask_cluster_equals_it_on_one_machine(payments):
    """Customers split by id modulo the shards compute apart: the same rows in the same order
    (floats up to the order of the month's sums: 4e-16 relative seen)."""
    from distributed import Client

    day = DAYS[-1]
    transactions = pl.concat([payments[d] for d in fe.customer_edge_days(day)]).lazy()
    activity = pl.concat(
        [
            fe.customer_daily_activity(payments[d].lazy())
            for d in fe.customer_activity_days(day)
            if d in payments
        ]
    ).lazy()
    one_machine = fe.customer_features_incremental(transactions, activity, day)
    with Client(
        processes=False, n_workers=2, threads_per_worker=1, dashboard_address=None
    ) as cluster:
        sharded = customer_features_sharded(cluster, transactions, activity, day, shards=3)
    assert sharded.select("customer_id", fe.TIMESTAMP).equals(
        one_machine.select("customer_id", fe.TIMESTAMP)
    )
    assert_same_rows(one_machine, sharded)
