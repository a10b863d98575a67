"""The prediction log writer: a slow or failing log never holds a prediction, and loses nothing
silently."""

import threading

import polars as pl
import pytest

from resources.prediction_log import LOG_COLUMNS, PredictionLog
from serving.model.log_writer import PredictionLogWriter

pytestmark = pytest.mark.unit


def rows(n: int, first: int = 0) -> list[dict]:
    return [
        {name: None for name in LOG_COLUMNS}
        | {"request_id": f"r{first + i}", "day": "2026-01-15", "source": "online", "score": 0.5}
        for i in range(n)
    ]


class BlockedLog(PredictionLog):
    """A log whose writes wait until released, then fail or succeed."""

    def model_post_init(self, context) -> None:
        self._release = threading.Event()
        self._fail = False

    def append(self, frame: pl.DataFrame) -> int:
        self._release.wait(timeout=10)
        if self._fail:
            raise OSError("disk full")
        return super().append(frame)


def test_rows_are_written_in_batches(tmp_path):
    log = PredictionLog(url=f"sqlite:///{tmp_path / 'p.db'}")
    writer = PredictionLogWriter(log, flush_seconds=0.05)
    writer.start()
    for i in range(10):
        writer.submit(rows(3, first=3 * i))
    writer.close()

    assert writer.rows == {"written": 30, "dropped": 0, "failed": 0}
    assert log.read("2026-01-15", ["online"])["request_id"].n_unique() == 30


def test_a_full_queue_drops_and_counts_without_waiting_and_a_failed_write_is_counted(tmp_path):
    log = BlockedLog(url=f"sqlite:///{tmp_path / 'p.db'}")
    writer = PredictionLogWriter(log, capacity=2, batch_rows=2, flush_seconds=0.01)
    writer.start()
    writer.submit(rows(2))  # taken by the writer, which then waits on the log
    while writer.pending():
        pass
    for i in range(5):  # two fit in the queue; three are dropped at once, nothing blocks
        writer.submit(rows(1, first=10 + i))

    assert writer.rows["dropped"] == 3
    log._fail = True
    log._release.set()
    writer.close()
    assert writer.rows == {"written": 0, "dropped": 3, "failed": 4}
