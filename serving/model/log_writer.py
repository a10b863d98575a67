"""Online predictions into the prediction log, off the request path.

A request hands its rows to a bounded queue and returns; a background thread writes them in
batches. When the queue is full (the log is slower than the traffic) or a write fails, the rows
are counted by reason and reported on ``/metrics`` and ``/healthz``, and logged as an error: a
prediction is never delayed or failed by its log, and no loss is silent.
"""

import logging
import queue
import threading
import time
from collections import Counter
from typing import Any

import polars as pl

from resources.prediction_log import LOG_COLUMNS, PredictionLog

log = logging.getLogger(__name__)
_STOP = object()


class PredictionLogWriter:
    """A bounded queue of prediction rows and the thread that writes them.

    Args:
        prediction_log: Where the rows go.
        capacity: Most requests' rows waiting to be written; more are counted as dropped.
        batch_rows: Rows written at once at most.
        flush_seconds: Longest a row waits for a batch to fill.
    """

    def __init__(
        self,
        prediction_log: PredictionLog,
        capacity: int = 20_000,
        batch_rows: int = 2_000,
        flush_seconds: float = 0.5,
    ):
        self.prediction_log = prediction_log
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self.rows = Counter({"written": 0, "dropped": 0, "failed": 0})
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)

    def start(self) -> None:
        """Start writing in the background."""
        self._thread.start()

    def submit(self, rows: list[dict[str, Any]]) -> None:
        """Queue one request's rows for the log without waiting."""
        try:
            self._queue.put_nowait(rows)
        except queue.Full:
            self._count("dropped", len(rows))
            log.error("prediction log queue full: %d rows not logged", len(rows))

    def pending(self) -> int:
        """Requests whose rows wait to be written."""
        return self._queue.qsize()

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop and close the log's connection."""
        self._queue.put(_STOP)
        self._thread.join(timeout=timeout)
        self.prediction_log.close()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch: list[dict[str, Any]] = []
            deadline = time.monotonic() + self.flush_seconds
            while len(batch) < self.batch_rows:
                try:
                    item = self._queue.get(timeout=max(deadline - time.monotonic(), 0.001))
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.extend(item)
            if batch:
                self._write(batch)

    def _write(self, batch: list[dict[str, Any]]) -> None:
        try:
            frame = pl.DataFrame(batch, schema_overrides=LOG_COLUMNS, infer_schema_length=None)
            self.prediction_log.append(frame)
        except Exception as error:
            self._count("failed", len(batch))
            log.error("prediction log write failed, %d rows not logged: %s", len(batch), error)
        else:
            self._count("written", len(batch))

    def _count(self, outcome: str, rows: int) -> None:
        with self._lock:
            self.rows[outcome] += rows
