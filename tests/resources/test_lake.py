"""Behavioural tests for the lake (datasets and baselines) and the platform clock."""

import datetime
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetIn, AssetKey, MetadataValue, asset, materialize
from polars.testing import assert_frame_equal

from resources.clock import Clock
from resources.lake import (
    EVERY_DELIVERY,
    KEEP_VERSIONS,
    BaselineNotAccepted,
    Lake,
    LakeIOManager,
    RecordIOManager,
)

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


# --- deliveries: every version of a partition kept, one current ---------------------------------


def test_every_delivery_of_a_partition_is_kept_and_the_latest_is_current(tmp_path: Path) -> None:
    lake = Lake(root=str(tmp_path))
    first = lake.write_delivery(_frame(5), KEY, "2026-03-02")
    second = lake.write_delivery(_frame(2, offset=100), KEY, "2026-03-02")

    assert (first, second) == ("delivery-0001", "delivery-0002")
    assert lake.version_path(KEY, "2026-03-02", first) == (
        tmp_path / "ingestion" / "raw_transactions" / "versions" / "2026-03-02" / f"{first}.parquet"
    )
    assert lake.versions(KEY, "2026-03-02") == ["delivery-0001", "delivery-0002"]
    assert lake.current_version(KEY, "2026-03-02") == "delivery-0002"
    # Readers read the current delivery, at the partition's usual path.
    assert_frame_equal(lake.read_dataset(KEY, "2026-03-02"), _frame(2, offset=100))
    assert lake.stored_partitions(KEY, ["2026-03-02", "2026-03-03"]) == ["2026-03-02"]
    assert lake.row_count(KEY, "2026-03-02") == 2
    # The earlier delivery stays readable as it arrived.
    assert_frame_equal(lake.read_version(KEY, "2026-03-02", "delivery-0001"), _frame(5))
    # Other partitions are independent.
    assert lake.versions(KEY, "2026-03-03") == []
    assert lake.current_version(KEY, "2026-03-03") is None


def test_a_partition_stored_before_deliveries_were_kept_becomes_the_first(tmp_path: Path) -> None:
    lake = Lake(root=str(tmp_path))
    lake.write_dataset(_frame(5), KEY, "2026-03-02")

    lake.write_delivery(_frame(2, offset=100), KEY, "2026-03-02")

    assert lake.versions(KEY, "2026-03-02") == ["delivery-0001", "delivery-0002"]
    assert_frame_equal(lake.read_version(KEY, "2026-03-02", "delivery-0001"), _frame(5))
    assert lake.current_version(KEY, "2026-03-02") == "delivery-0002"


def test_concurrent_deliveries_of_one_partition_are_all_kept(tmp_path: Path) -> None:
    lake = Lake(root=str(tmp_path))
    frames = [_big_frame(seed) for seed in range(4)]
    start = threading.Barrier(len(frames))

    def deliver(frame: pl.DataFrame) -> None:
        start.wait()
        lake.write_delivery(frame, KEY, "2026-03-02")

    writers = [threading.Thread(target=deliver, args=(frame,)) for frame in frames]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()

    versions = lake.versions(KEY, "2026-03-02")
    assert versions == [f"delivery-{n:04d}" for n in range(1, 5)]
    kept = [lake.read_version(KEY, "2026-03-02", v)["writer"][0] for v in versions]
    assert sorted(kept) == [0, 1, 2, 3]
    current = lake.read_dataset(KEY, "2026-03-02")
    assert lake.current_version(KEY, "2026-03-02") in versions
    assert any(current.equals(frame) for frame in frames)


def test_the_io_manager_keeps_every_delivery_of_an_asset_that_asks_for_it(tmp_path: Path) -> None:
    lake = Lake(root=str(tmp_path))
    rows = iter([_frame(5), _frame(2, offset=100)])

    @asset(metadata={KEEP_VERSIONS: EVERY_DELIVERY})
    def deliveries() -> pl.DataFrame:
        return next(rows)

    for _ in range(2):
        result = materialize([deliveries], resources={"io_manager": LakeIOManager(lake=lake)})
    (event,) = result.asset_materializations_for_node("deliveries")

    assert event.metadata["current_delivery"].value == "delivery-0002"
    assert event.metadata["deliveries_kept"].value == 2
    assert lake.versions(AssetKey("deliveries")) == ["delivery-0001", "delivery-0002"]
    assert_frame_equal(lake.read_dataset(AssetKey("deliveries")), _frame(2, offset=100))


# --- atomic writes: concurrent writers, a writer killed mid-write ------------------------------


def _big_frame(seed: int, n: int = 300_000) -> pl.DataFrame:
    return pl.DataFrame(
        {"transaction_id": pl.Series(range(n), dtype=pl.Int64) + seed, "writer": [seed] * n}
    )


def test_two_concurrent_writers_of_one_partition_leave_one_complete_file(tmp_path: Path) -> None:
    lake = Lake(root=str(tmp_path))
    frames = [_big_frame(1), _big_frame(2)]
    for _ in range(10):
        start, errors = threading.Barrier(2), []

        def write(frame: pl.DataFrame, start=start, errors=errors) -> None:
            start.wait()
            try:
                lake.write_dataset(frame, KEY, "2026-03-02")
            except Exception as error:  # noqa: BLE001 - the test reports what a writer hit
                errors.append(error)

        writers = [threading.Thread(target=write, args=(frame,)) for frame in frames]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()

        assert errors == []
        stored = lake.read_dataset(KEY, "2026-03-02")
        assert any(stored.equals(frame) for frame in frames), "one writer's rows, whole"
        folder = lake.dataset_path(KEY, "2026-03-02").parent
        assert [p.name for p in folder.iterdir()] == ["2026-03-02.parquet"], "no temp file left"


# The writer, in its own process: the kernel stops its writes past ``limit`` bytes (RLIMIT_FSIZE)
# and the signal that sends kills it with SIGKILL, so it dies halfway through the new file.
KILLED_WRITER = """
import os, resource, signal, sys
import polars as pl
from dagster import AssetKey, build_output_context
from resources.lake import Lake, RecordIOManager

root, what, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
lake = Lake(root=root)
signal.signal(signal.SIGXFSZ, lambda *_: os.kill(os.getpid(), signal.SIGKILL))
big = pl.DataFrame({"transaction_id": range(2_000_000)})
record = {"rows": list(range(200_000))}
context = build_output_context(asset_key=AssetKey("report"))
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
print("writing", flush=True)
if what == "dataset":
    lake.write_dataset(big, AssetKey(["ingestion", "raw_transactions"]), "2026-03-02")
else:
    RecordIOManager(lake=lake).handle_output(context, record)
print("done", flush=True)
"""


def _killed_writer(root: Path, what: str, limit: int = 64 * 1024) -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_WRITER), str(root), what, str(limit)],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=120,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert done.stdout.split() == ["writing"], "killed during the write, not before or after"


def test_a_writer_killed_mid_write_leaves_the_previous_dataset_readable(tmp_path: Path) -> None:
    lake = Lake(root=str(tmp_path))
    lake.write_dataset(_frame(5), KEY, "2026-03-02")

    _killed_writer(tmp_path, "dataset")

    assert_frame_equal(lake.read_dataset(KEY, "2026-03-02"), _frame(5))


def test_a_writer_killed_mid_write_leaves_the_previous_record_readable(tmp_path: Path) -> None:
    @asset
    def report() -> dict:
        return {"version": "3", "passed": True}

    records = RecordIOManager(lake=Lake(root=str(tmp_path)))
    assert materialize([report], resources={"io_manager": records}).success

    _killed_writer(tmp_path, "record")

    stored = tmp_path / "records" / "report.json"
    assert json.loads(stored.read_text(encoding="utf-8")) == {"version": "3", "passed": True}


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
