"""Behavioural tests for the source systems: simulated, files and SQL.

Every source must deliver a day exactly as the source holds it and say clearly (with
PartitionNotReady) when a day is not there yet, so these tests compare what each source returns
with the simulator's own frames and pin the "not ready" and error paths. Volumes are tiny.
"""

import datetime
import os
import sqlite3
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from polars.testing import assert_frame_equal

from resources.environments import build_resources
from resources.sources.incidents import Scenario
from resources.sources.schema import CHARGEBACK_COLUMNS, CHARGEBACK_SCHEMA, TRANSACTION_SCHEMA
from resources.sources.simulator import CardPaymentsSimulator
from resources.sources.systems import (
    FileSource,
    PartitionNotReady,
    ScenarioConfig,
    SimulatedSource,
    SqlSource,
)

pytestmark = pytest.mark.unit

ROWS = 300
DAY = datetime.date(2024, 3, 6)
ONE_DAY = datetime.timedelta(days=1)
# The simulator delivers a day at 00:30 UTC the next day.
AVAILABLE = datetime.datetime(2024, 3, 7, 0, 30, tzinfo=datetime.UTC)
LONG_AFTER = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
TICK = datetime.timedelta(microseconds=1)


def _sim(*scenarios: Scenario) -> CardPaymentsSimulator:
    return CardPaymentsSimulator(rows_per_day=ROWS, scenarios=scenarios)


def _transactions(day: datetime.date = DAY) -> pl.DataFrame:
    return _sim().day(day).transactions


def _source(*scenarios: ScenarioConfig) -> SimulatedSource:
    return SimulatedSource(rows_per_day=ROWS, scenarios=list(scenarios))


# --- SimulatedSource ----------------------------------------------------------------------------


def test_simulated_day_is_not_ready_before_half_past_midnight_next_day() -> None:
    source = _source()
    for as_of in (
        datetime.datetime(2024, 3, 6, 12, tzinfo=datetime.UTC),
        datetime.datetime(2024, 3, 7, 0, 0, tzinfo=datetime.UTC),
        AVAILABLE - TICK,
    ):
        with pytest.raises(PartitionNotReady, match="2024-03-06"):
            source.fetch("transactions", DAY, as_of)


def test_simulated_day_after_availability_is_the_simulators_frame() -> None:
    delivery = _source().fetch("transactions", DAY, AVAILABLE)

    assert delivery.available_at == AVAILABLE
    assert delivery.frame.height > 0
    assert delivery.frame.schema == pl.Schema(TRANSACTION_SCHEMA)
    assert_frame_equal(delivery.frame, _transactions())
    # Much later the same day is still the same frame: the source is deterministic.
    assert_frame_equal(_source().fetch("transactions", DAY, LONG_AFTER).frame, _transactions())


def test_simulated_source_seed_changes_the_data() -> None:
    other = SimulatedSource(seed=8, rows_per_day=ROWS).fetch("transactions", DAY, AVAILABLE)
    assert not other.frame.equals(_transactions())
    assert "seed=8" in SimulatedSource(seed=8, rows_per_day=ROWS).describe()


def test_missing_partition_is_never_delivered() -> None:
    source = _source(ScenarioConfig(kind="missing_partition", start="2024-03-06", end="2024-03-06"))
    for as_of in (AVAILABLE, LONG_AFTER):
        with pytest.raises(PartitionNotReady, match="not been delivered"):
            source.fetch("transactions", DAY, as_of)
    # Days outside the scenario are unaffected.
    next_day = source.fetch("transactions", DAY + ONE_DAY, LONG_AFTER)
    assert_frame_equal(next_day.frame, _transactions(DAY + ONE_DAY))


def test_late_partition_moves_availability_by_its_intensity_in_hours() -> None:
    source = _source(
        ScenarioConfig(kind="late_partition", start="2024-03-06", end="2024-03-06", intensity=5)
    )
    late = AVAILABLE + datetime.timedelta(hours=5)

    for as_of in (AVAILABLE, late - TICK):
        with pytest.raises(PartitionNotReady):
            source.fetch("transactions", DAY, as_of)
    delivery = source.fetch("transactions", DAY, late)
    assert delivery.available_at == late
    assert_frame_equal(delivery.frame, _transactions())
    # The day before is on time.
    on_time = source.fetch("transactions", DAY - ONE_DAY, AVAILABLE - ONE_DAY)
    assert on_time.available_at == AVAILABLE - ONE_DAY


def test_chargebacks_feed_returns_the_chargeback_columns() -> None:
    source = _source()
    with pytest.raises(PartitionNotReady):
        source.fetch("chargebacks", DAY, AVAILABLE - TICK)

    delivery = source.fetch("chargebacks", DAY, AVAILABLE)

    assert tuple(delivery.frame.columns) == CHARGEBACK_COLUMNS
    assert delivery.frame.schema == pl.Schema(CHARGEBACK_SCHEMA)
    assert delivery.frame.height > 0
    assert set(delivery.frame["reported_at"].dt.date()) == {DAY}
    assert_frame_equal(delivery.frame, _sim().chargebacks(DAY))


def test_scenario_with_a_bad_kind_names_the_field_when_the_simulator_is_used() -> None:
    source = _source(ScenarioConfig(kind="meteor_strike", start="2024-03-06", end="2024-03-06"))
    with pytest.raises(ValueError, match=r"Scenario\.kind.*'meteor_strike'"):
        source.fetch("transactions", DAY, LONG_AFTER)


def test_scenario_with_intensity_out_of_range_names_the_field() -> None:
    source = _source(
        ScenarioConfig(kind="null_spike", start="2024-03-06", end="2024-03-06", intensity=3)
    )
    with pytest.raises(ValueError, match=r"Scenario\.intensity"):
        source.fetch("transactions", DAY, LONG_AFTER)


# --- FileSource ---------------------------------------------------------------------------------


def _write_day_files(
    directory: Path, feed: str, frames: dict[datetime.date, pl.DataFrame], fmt: str
) -> None:
    folder = directory / feed
    folder.mkdir(parents=True, exist_ok=True)
    for day, frame in frames.items():
        path = folder / f"{day.isoformat()}.{fmt}"
        frame.write_parquet(path) if fmt == "parquet" else frame.write_csv(path)


def test_file_source_parquet_per_day_round_trips_the_exact_frame(tmp_path: Path) -> None:
    expected = _transactions()
    _write_day_files(tmp_path, "transactions", {DAY: expected}, "parquet")
    day_file = tmp_path / "transactions" / "2024-03-06.parquet"
    # A file copied years later: its modification time says nothing of when the day arrived.
    os.utime(day_file, (LONG_AFTER.timestamp(), LONG_AFTER.timestamp()))

    delivery = FileSource(directory=str(tmp_path)).fetch("transactions", DAY, LONG_AFTER)

    assert_frame_equal(delivery.frame, expected)
    assert delivery.available_at is None


def test_file_source_delivery_time_is_the_declared_per_row_stamp(tmp_path: Path) -> None:
    expected = _transactions()
    first, second = AVAILABLE, AVAILABLE + datetime.timedelta(hours=2)
    stamps = pl.Series("loaded_at", [first] * 100 + [second] * (expected.height - 100))
    _write_day_files(tmp_path, "transactions", {DAY: expected.with_columns(stamps)}, "parquet")
    source = FileSource(directory=str(tmp_path), loaded_at_column="loaded_at")

    early = source.fetch("transactions", DAY, first)
    late = source.fetch("transactions", DAY, LONG_AFTER)

    # Only the rows loaded by as_of; the stamp column is load metadata, not part of the feed.
    assert (early.frame.height, early.available_at) == (100, first)
    assert_frame_equal(late.frame, expected)
    assert late.available_at == second


def test_file_source_csv_per_day_yields_same_values_with_utc_timestamps(tmp_path: Path) -> None:
    expected = _transactions()
    _write_day_files(tmp_path, "transactions", {DAY: expected}, "csv")

    delivery = FileSource(directory=str(tmp_path), file_format="csv").fetch(
        "transactions", DAY, LONG_AFTER
    )

    assert delivery.frame.schema["event_timestamp"] == pl.Datetime("us", "UTC")
    assert_frame_equal(delivery.frame, expected)


def test_file_source_csv_naive_timestamps_are_read_as_utc(tmp_path: Path) -> None:
    folder = tmp_path / "chargebacks"
    folder.mkdir()
    (folder / "reports.csv").write_text(
        "transaction_id,reported_at\n"
        "1,2024-03-05 23:59:59.999999\n"
        "2,2024-03-06 00:00:00\n"
        "3,2024-03-06 23:59:59.999999\n"
        "4,2024-03-07 00:00:00\n",
        encoding="utf-8",
    )

    frame = (
        FileSource(directory=str(tmp_path), file_format="csv")
        .fetch("chargebacks", DAY, LONG_AFTER)
        .frame
    )

    assert frame.schema["reported_at"] == pl.Datetime("us", "UTC")
    assert frame["transaction_id"].to_list() == [2, 3]
    assert frame["reported_at"].to_list() == [
        datetime.datetime(2024, 3, 6, tzinfo=datetime.UTC),
        datetime.datetime(2024, 3, 6, 23, 59, 59, 999999, tzinfo=datetime.UTC),
    ]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_file_source_multi_day_file_is_filtered_to_exactly_the_day(
    tmp_path: Path, fmt: str
) -> None:
    days = [DAY - ONE_DAY, DAY, DAY + ONE_DAY]
    frames = {d: _transactions(d) for d in days}
    everything = pl.concat(frames.values())
    folder = tmp_path / "transactions"
    folder.mkdir()
    path = folder / f"export.{fmt}"
    everything.write_parquet(path) if fmt == "parquet" else everything.write_csv(path)
    source = FileSource(directory=str(tmp_path), file_format=fmt)

    for day in days:
        assert_frame_equal(source.fetch("transactions", day, LONG_AFTER).frame, frames[day])
    with pytest.raises(PartitionNotReady, match="no transactions rows for 2024-03-08"):
        source.fetch("transactions", DAY + 2 * ONE_DAY, LONG_AFTER)


def test_file_source_multi_file_feed_uses_the_chargebacks_timestamp(tmp_path: Path) -> None:
    sim = _sim()
    folder = tmp_path / "chargebacks"
    folder.mkdir()
    # Two exports whose rows straddle report days, named without dates.
    pl.concat([sim.chargebacks(DAY - ONE_DAY), sim.chargebacks(DAY)]).write_parquet(
        folder / "export-a.parquet"
    )
    sim.chargebacks(DAY + ONE_DAY).write_parquet(folder / "export-b.parquet")

    frame = FileSource(directory=str(tmp_path)).fetch("chargebacks", DAY, LONG_AFTER).frame

    assert_frame_equal(frame, sim.chargebacks(DAY))


def test_file_source_missing_day_is_not_ready(tmp_path: Path) -> None:
    source = FileSource(directory=str(tmp_path))
    # No folder at all.
    with pytest.raises(PartitionNotReady, match="no transactions file for"):
        source.fetch("transactions", DAY, LONG_AFTER)
    # Other days delivered, this one not (yet).
    _write_day_files(
        tmp_path, "transactions", {DAY - ONE_DAY: _transactions(DAY - ONE_DAY)}, "parquet"
    )
    with pytest.raises(PartitionNotReady, match="2024-03-06"):
        source.fetch("transactions", DAY, LONG_AFTER)


def test_file_source_missing_day_after_a_schema_change_day_is_still_not_ready(
    tmp_path: Path,
) -> None:
    sim = _sim(Scenario("schema_change", DAY, DAY))
    _write_day_files(
        tmp_path,
        "transactions",
        {d: sim.day(d).transactions for d in (DAY - ONE_DAY, DAY)},
        "parquet",
    )
    source = FileSource(directory=str(tmp_path))
    # The delivered incident day is returned as delivered, uncorrected.
    assert "amount_cents" in source.fetch("transactions", DAY, LONG_AFTER).frame.columns

    with pytest.raises(PartitionNotReady):
        source.fetch("transactions", DAY + ONE_DAY, LONG_AFTER)


@pytest.mark.parametrize(
    ("feed", "column"), [("transactions", "event_timestamp"), ("chargebacks", "reported_at")]
)
def test_file_source_without_day_files_or_timestamp_column_names_the_column(
    tmp_path: Path, feed: str, column: str
) -> None:
    folder = tmp_path / feed
    folder.mkdir()
    pl.DataFrame({"transaction_id": [1, 2], "when": ["2024-03-06", "2024-03-06"]}).write_parquet(
        folder / "batch-1.parquet"
    )

    with pytest.raises(ValueError, match=f"'{column}'"):
        FileSource(directory=str(tmp_path)).fetch(feed, DAY, LONG_AFTER)


def test_file_source_describe_names_folder_and_format(tmp_path: Path) -> None:
    assert FileSource(directory=str(tmp_path), file_format="csv").describe() == (
        f"files({tmp_path}, csv)"
    )


# --- SqlSource ----------------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file holding two simulated days of transactions and one day of chargebacks."""
    path = tmp_path / "payments.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        for day in (DAY - ONE_DAY, DAY):
            _transactions(day).to_pandas().to_sql(
                "transactions",
                engine,
                index=False,
                if_exists="append",
                dtype={"event_timestamp": sa.DateTime()},
            )
        _sim().chargebacks(DAY).to_pandas().to_sql(
            "chargebacks",
            engine,
            index=False,
            dtype={"transaction_timestamp": sa.DateTime(), "reported_at": sa.DateTime()},
        )
    finally:
        engine.dispose()
    return f"sqlite:///{path}"


def _table_rows(url: str, table: str) -> int:
    with sqlite3.connect(sa.make_url(url).database) as connection:
        return connection.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]


def test_sql_source_returns_the_exact_frame_with_utc_timestamps(sqlite_url: str) -> None:
    source = SqlSource(url=sqlite_url)
    as_of = datetime.datetime(2024, 3, 7, 2, tzinfo=datetime.UTC)

    delivery = source.fetch("transactions", DAY, as_of)

    assert delivery.frame.schema == pl.Schema(TRANSACTION_SCHEMA)
    assert_frame_equal(delivery.frame, _transactions(), check_dtypes=True)
    assert delivery.available_at is None, "without a watermark the delivery time is unknown"
    assert_frame_equal(
        source.fetch("transactions", DAY - ONE_DAY, as_of).frame, _transactions(DAY - ONE_DAY)
    )


def test_sql_source_chargebacks_use_reported_at(sqlite_url: str) -> None:
    frame = SqlSource(url=sqlite_url).fetch("chargebacks", DAY, LONG_AFTER).frame
    assert_frame_equal(frame, _sim().chargebacks(DAY), check_dtypes=True)


def test_sql_source_day_without_rows_is_not_ready(sqlite_url: str) -> None:
    with pytest.raises(PartitionNotReady, match="no transactions rows for 2024-03-07"):
        SqlSource(url=sqlite_url).fetch("transactions", DAY + ONE_DAY, LONG_AFTER)


def test_sql_source_hostile_table_name_is_not_executed(sqlite_url: str) -> None:
    before = _table_rows(sqlite_url, "transactions")
    source = SqlSource(url=sqlite_url, transactions_table="transactions; DROP TABLE transactions")

    with pytest.raises(sa.exc.NoSuchTableError, match="DROP TABLE"):
        source.fetch("transactions", DAY, LONG_AFTER)

    assert _table_rows(sqlite_url, "transactions") == before > 0
    # The honest table still reads.
    assert SqlSource(url=sqlite_url).fetch("transactions", DAY, LONG_AFTER).frame.height > 0


def test_sql_source_table_name_is_quoted_as_an_identifier(sqlite_url: str) -> None:
    weird = 'tx"; DROP TABLE transactions; --'
    engine = sa.create_engine(sqlite_url)
    try:
        _transactions().to_pandas().to_sql(
            weird, engine, index=False, dtype={"event_timestamp": sa.DateTime()}
        )
    finally:
        engine.dispose()
    before = _table_rows(sqlite_url, "transactions")

    frame = SqlSource(url=sqlite_url, transactions_table=weird).fetch(
        "transactions", DAY, LONG_AFTER
    )

    assert_frame_equal(frame.frame, _transactions())
    assert _table_rows(sqlite_url, "transactions") == before


def test_sql_source_day_must_be_a_date_not_sql_text(sqlite_url: str) -> None:
    before = _table_rows(sqlite_url, "transactions")
    hostile = "2024-03-06' OR '1'='1'; DROP TABLE transactions; --"

    with pytest.raises(TypeError):
        SqlSource(url=sqlite_url).fetch("transactions", hostile, LONG_AFTER)  # type: ignore[arg-type]

    assert _table_rows(sqlite_url, "transactions") == before


def test_sql_source_table_without_day_column_names_the_column(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    engine = sa.create_engine(url)
    try:
        pl.DataFrame({"transaction_id": [1]}).to_pandas().to_sql("transactions", engine)
    finally:
        engine.dispose()

    with pytest.raises(ValueError, match="'event_timestamp'"):
        SqlSource(url=url).fetch("transactions", DAY, LONG_AFTER)


def test_sql_source_describe_hides_the_password() -> None:
    described = SqlSource(
        url="postgresql://flywheel:s3cr3t-pw@db.internal:5432/payments"
    ).describe()

    assert "s3cr3t-pw" not in described
    assert described == "sql(postgresql://flywheel:***@db.internal:5432/payments)"


# --- SqlSource: when a day was delivered ----------------------------------------------------------

LOADED = datetime.datetime(2024, 3, 7, 3, 15, tzinfo=datetime.UTC)


def _write(url: str, table: str, frame: pl.DataFrame, **dtype: sa.types.TypeEngine) -> None:
    engine = sa.create_engine(url)
    try:
        frame.to_pandas().to_sql(table, engine, index=False, if_exists="append", dtype=dtype)
    finally:
        engine.dispose()


@pytest.fixture
def watermarked_url(tmp_path: Path) -> str:
    """Transactions whose loader stamps each row: most at 01:00, the last batch at 03:15."""
    url = f"sqlite:///{tmp_path / 'watermarked.db'}"
    rows = _transactions()
    stamps = [LOADED - datetime.timedelta(hours=2, minutes=15)] * (rows.height - 10)
    stamps += [LOADED] * 10
    stamped = rows.with_columns(pl.Series("_loaded_at", stamps, dtype=pl.Datetime("us", "UTC")))
    _write(url, "transactions", stamped, event_timestamp=sa.DateTime(), _loaded_at=sa.DateTime())
    return url


def test_sql_source_delivery_time_is_the_days_load_watermark(watermarked_url: str) -> None:
    source = SqlSource(url=watermarked_url, loaded_at_column="_loaded_at")

    delivery = source.fetch("transactions", DAY, LONG_AFTER)

    assert delivery.available_at == LOADED, "the last row's load time, not the fetch time"
    assert_frame_equal(delivery.frame, _transactions(), check_dtypes=True)


def test_sql_source_rows_loaded_after_as_of_are_not_known_yet(watermarked_url: str) -> None:
    source = SqlSource(url=watermarked_url, loaded_at_column="_loaded_at")

    early = source.fetch("transactions", DAY, LOADED - TICK)
    assert early.frame.height == _transactions().height - 10
    assert early.available_at == LOADED - datetime.timedelta(hours=2, minutes=15)
    with pytest.raises(PartitionNotReady):
        source.fetch("transactions", DAY, datetime.datetime(2024, 3, 7, tzinfo=datetime.UTC))


def test_sql_source_missing_watermark_column_names_it(sqlite_url: str) -> None:
    with pytest.raises(ValueError, match="'_loaded_at'"):
        SqlSource(url=sqlite_url, loaded_at_column="_loaded_at").fetch(
            "transactions", DAY, LONG_AFTER
        )


def _mark_complete(url: str, *markers: tuple[str, str, datetime.datetime]) -> None:
    frame = pl.DataFrame(
        {
            "feed": [m[0] for m in markers],
            "business_day": [m[1] for m in markers],
            "completed_at": [m[2] for m in markers],
        },
        schema={"feed": pl.String, "business_day": pl.String, "completed_at": pl.Datetime("us")},
    )
    _write(url, "load_markers", frame, completed_at=sa.DateTime())


def test_sql_source_delivery_time_is_the_days_completeness_marker(sqlite_url: str) -> None:
    naive = LOADED.replace(tzinfo=None)
    _mark_complete(sqlite_url, ("transactions", DAY.isoformat(), naive))
    source = SqlSource(url=sqlite_url, completeness_table="load_markers")

    delivery = source.fetch("transactions", DAY, LONG_AFTER)

    assert delivery.available_at == LOADED
    assert_frame_equal(delivery.frame, _transactions(), check_dtypes=True)
    with pytest.raises(PartitionNotReady, match="marked complete"):
        source.fetch("transactions", DAY, LOADED - TICK)


def test_sql_source_day_with_rows_but_no_marker_is_not_ready(sqlite_url: str) -> None:
    _mark_complete(sqlite_url, ("chargebacks", (DAY - ONE_DAY).isoformat(), LOADED))
    source = SqlSource(url=sqlite_url, completeness_table="load_markers")

    with pytest.raises(PartitionNotReady, match="marked complete"):
        source.fetch("transactions", DAY - ONE_DAY, LONG_AFTER)


def test_prod_takes_the_sources_delivery_time_settings_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("FLYWHEEL_SOURCE_COMPLETENESS_TABLE", "load_markers")
    source = build_resources("prod")["source"]
    assert (source.completeness_table, source.loaded_at_column) == ("load_markers", None)
    monkeypatch.delenv("FLYWHEEL_SOURCE_COMPLETENESS_TABLE")
    monkeypatch.setenv("FLYWHEEL_SOURCE_LOADED_AT_COLUMN", "loaded_at")
    source = build_resources("prod")["source"]
    assert (source.completeness_table, source.loaded_at_column) == (None, "loaded_at")
