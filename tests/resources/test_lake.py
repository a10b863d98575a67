"""Behavioural tests for the lake (datasets and baselines) and the platform clock."""

import datetime
import json
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetIn, AssetKey, MetadataValue, asset, materialize
from polars.testing import assert_frame_equal

from resources.clock import Clock
from resources.lake import BaselineNotAccepted, Lake, RecordIOManager

pytestmark = pytest.mark.unit

KEY = AssetKey(["ingestion", "raw_transactions"])


def _frame(n: int = 5, offset: int = 0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "transaction_id": pl.Series(range(offset, offset + n), dtype=pl.Int64),
            "amount": [1.25 * i for i in range(n)],
            "country": ["US", None, "GB", "DE", "FR"][:n],
            "event_timestamp": pl.Series(
                [datetime.datetime(2026, 3, 2, i, tzinfo=datetime.UTC) for i in range(n)],
                dtype=pl.Datetime("us", "UTC"),
            ),
        }
    )


# --- datasets -----------------------------------------------------------------------------------


def test_write_read_round_trip_and_path_layout(tmp_path: Path) -> None:
    lake = Lake(root=str(tmp_path))
    frame = _frame()

    path = lake.write_dataset(frame, KEY, "2026-03-02")

    assert path == tmp_path / "ingestion" / "raw_transactions" / "2026-03-02.parquet"
    assert lake.dataset_path(KEY, "2026-03-02") == path
    assert path.is_file()
    # Written atomically: no partial file is left behind.
    assert sorted(p.name for p in path.parent.iterdir()) == ["2026-03-02.parquet"]
    assert_frame_equal(lake.read_dataset(KEY, "2026-03-02"), frame)
    # Anyone with polars can read it directly.
    assert_frame_equal(pl.read_parquet(path), frame)


def test_unpartitioned_dataset_lives_next_to_the_partition_folder(tmp_path: Path) -> None:
    lake = Lake(root=str(tmp_path))
    frame = _frame()

    path = lake.write_dataset(frame, KEY)

    assert path == tmp_path / "ingestion" / "raw_transactions.parquet"
    assert_frame_equal(lake.read_dataset(KEY), frame)


def test_rewriting_a_partition_replaces_it(tmp_path: Path) -> None:
    lake = Lake(root=str(tmp_path))
    lake.write_dataset(_frame(5), KEY, "2026-03-02")
    lake.write_dataset(_frame(2, offset=100), KEY, "2026-03-02")

    assert_frame_equal(lake.read_dataset(KEY, "2026-03-02"), _frame(2, offset=100))


def test_reading_a_never_materialized_partition_names_asset_and_partition(tmp_path: Path) -> None:
    lake = Lake(root=str(tmp_path))
    lake.write_dataset(_frame(), KEY, "2026-03-02")

    with pytest.raises(FileNotFoundError, match=r"ingestion/raw_transactions partition 2026-03-03"):
        lake.read_dataset(KEY, "2026-03-03")
    with pytest.raises(FileNotFoundError, match="raw_transactions"):
        lake.read_dataset(AssetKey("raw_transactions"))


def test_row_count_from_the_footer(tmp_path: Path) -> None:
    lake = Lake(root=str(tmp_path))
    lake.write_dataset(_frame(5), KEY, "2026-03-02")
    lake.write_dataset(_frame(0), KEY, "2026-03-03")

    assert lake.row_count(KEY, "2026-03-02") == 5
    assert lake.row_count(KEY, "2026-03-03") == 0
    assert lake.row_count(KEY, "2026-03-04") is None


def test_report_path_is_under_reports_and_its_folder_exists(tmp_path: Path) -> None:
    path = Lake(root=str(tmp_path)).report_path("drift", "2026-03-02.html")

    assert path == tmp_path / "reports" / "drift" / "2026-03-02.html"
    assert path.parent.is_dir()
    assert not path.exists()


def test_a_record_is_stored_as_json_and_its_metadata_path_is_relative_to_the_lake(
    tmp_path: Path,
) -> None:
    @asset(key=["model", "report"], io_manager_key="records")
    def report() -> dict:
        return {"version": "3", "passed": True}

    @asset(ins={"report": AssetIn(key=["model", "report"])})
    def reader(report: dict) -> dict:
        return report

    records = RecordIOManager(lake=Lake(root=str(tmp_path)))
    result = materialize([report, reader], resources={"records": records})

    assert result.output_for_node("reader") == {"version": "3", "passed": True}
    stored = tmp_path / "records" / "model" / "report.json"
    assert json.loads(stored.read_text(encoding="utf-8")) == {"version": "3", "passed": True}
    (event,) = result.asset_materializations_for_node("model__report")
    # Relative: an absolute path is shown whole and widens the asset page past a laptop screen.
    assert event.metadata["record"] == MetadataValue.path("records/model/report.json")


# --- baselines ----------------------------------------------------------------------------------


def test_accepted_baseline_before_any_save_raises(tmp_path: Path) -> None:
    with pytest.raises(BaselineNotAccepted, match="transactions"):
        Lake(root=str(tmp_path)).accepted_baseline("transactions")
    assert issubclass(BaselineNotAccepted, LookupError)


def test_saving_two_baselines_keeps_both_and_moves_the_pointer(tmp_path: Path) -> None:
    lake = Lake(root=str(tmp_path))
    first_profile = {"rows": 300, "amount": {"mean": 41.5}}
    second_profile = {"rows": 310, "amount": {"mean": 43.0}}

    first = lake.save_baseline("transactions", first_profile, _frame(3))
    assert lake.accepted_baseline("transactions") == (first, first_profile)
    second = lake.save_baseline("transactions", second_profile, _frame(4, offset=10))

    assert first != second
    assert lake.accepted_baseline("transactions") == (second, second_profile)
    folder = tmp_path / "baselines" / "transactions"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["ACCEPTED", f"{first}.json", f"{first}.parquet", f"{second}.json", f"{second}.parquet"]
    )
    assert (folder / "ACCEPTED").read_text(encoding="utf-8").strip() == second
    # The old version stays readable.
    assert json.loads((folder / f"{first}.json").read_text(encoding="utf-8")) == first_profile
    assert_frame_equal(lake.baseline_sample("transactions", first), _frame(3))


def test_baseline_sample_returns_the_sample(tmp_path: Path) -> None:
    lake = Lake(root=str(tmp_path))
    sample = _frame(5)
    version = lake.save_baseline("transactions", {"rows": 5}, sample)

    assert_frame_equal(lake.baseline_sample("transactions", version), sample)
    # Baselines of different names are independent.
    with pytest.raises(BaselineNotAccepted):
        lake.accepted_baseline("chargebacks")


def test_baseline_versions_are_immutable_even_with_an_identical_profile(tmp_path: Path) -> None:
    lake = Lake(root=str(tmp_path))
    profile = {"rows": 5}
    # Make sure both saves fall in one wall-clock second, where the collision happens.
    for _ in range(5):
        before = datetime.datetime.now(datetime.UTC)
        first = lake.save_baseline("transactions", profile, _frame(3))
        second = lake.save_baseline("transactions", profile, _frame(4, offset=10))
        after = datetime.datetime.now(datetime.UTC)
        if before.replace(microsecond=0) == after.replace(microsecond=0):
            break

    assert first != second
    assert_frame_equal(lake.baseline_sample("transactions", first), _frame(3))


# --- clock --------------------------------------------------------------------------------------


def test_frozen_naive_instant_is_read_as_utc() -> None:
    now = Clock(frozen_at="2026-03-02T06:00:00").now()

    assert now == datetime.datetime(2026, 3, 2, 6, tzinfo=datetime.UTC)
    assert now.tzinfo is datetime.UTC


def test_frozen_aware_instant_is_converted_to_utc() -> None:
    now = Clock(frozen_at="2026-03-02T08:30:00+02:00").now()

    assert now == datetime.datetime(2026, 3, 2, 6, 30, tzinfo=datetime.UTC)
    assert now.utcoffset() == datetime.timedelta(0)
    assert (now.hour, now.minute) == (6, 30)
    assert Clock(frozen_at="2026-03-01T22:00:00-05:00").now().date() == datetime.date(2026, 3, 2)


def test_frozen_clock_does_not_move() -> None:
    clock = Clock(frozen_at="2026-03-02T06:00:00Z")
    assert clock.now() == clock.now() == datetime.datetime(2026, 3, 2, 6, tzinfo=datetime.UTC)


@pytest.mark.parametrize("frozen_at", [None, ""])
def test_unfrozen_clock_is_aware_real_time(frozen_at: str | None) -> None:
    before = datetime.datetime.now(datetime.UTC)
    now = Clock(frozen_at=frozen_at).now()
    after = datetime.datetime.now(datetime.UTC)

    assert now.utcoffset() == datetime.timedelta(0)
    assert before <= now <= after
    assert after - before < datetime.timedelta(seconds=5)
