"""The data ``bench/scale.py`` measures on: a big day's lake and prediction-log rows.

* A day's lake as ``new_day.month_lake`` prepares it, as lazy scans of its files, so Dask
  workers read them too (the training set is ``datasets.build_training_set``).
* Prediction-log rows with ``LOG_COLUMNS`` and float feature columns, as the batch scorer and
  the online writer append them.
"""

import datetime
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from helpers.new_day import ACTIVITY, VALIDATED, day_file, month_lake
from platform_assets.features import engineering as fe
from resources.prediction_log import BATCH, LOG_COLUMNS


def day_lake(root: Path, rows_per_day: int, day: datetime.date, seed: int) -> dict[str, Any]:
    """``new_day.month_lake`` of ``day`` with the incremental path's inputs as lazy scans.

    The edge days' payments and the month's ``customer_daily_activity`` are scans of the lake's
    files, which Dask workers read themselves; with the day's payments and the seconds the
    preparation took.
    """
    started = time.perf_counter()
    lake = month_lake(root, rows_per_day, day, seed)
    return {
        "lake": lake,
        "payments": (
            pl.scan_parquet(day_file(lake, VALIDATED, day)).select(pl.len()).collect().item()
        ),
        "transactions": pl.scan_parquet(
            [day_file(lake, VALIDATED, d) for d in fe.customer_edge_days(day)]
        ),
        "activity": pl.scan_parquet(
            [day_file(lake, ACTIVITY, d) for d in fe.customer_activity_days(day)]
        ),
        "prepare_s": time.perf_counter() - started,
    }


def log_rows(rows: int, features: list[str], seed: int, offset: int = 0) -> pl.DataFrame:
    """``rows`` prediction-log rows of the batch scorer: ``LOG_COLUMNS`` then ``features``.

    Values are random but typed as the scorers write them; ``offset`` keeps ids unique across
    frames.
    """
    rng = np.random.default_rng(seed)
    ids = np.arange(offset, offset + rows)
    # A payment every 100 ms from the day's start, in microseconds since the epoch.
    start_us = int(datetime.datetime(2026, 3, 1, tzinfo=datetime.UTC).timestamp() * 1e6)
    times = pl.Series(start_us + ids * 100_000).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    score = rng.random(rows)
    frame = pl.DataFrame(
        {
            "request_id": [f"r{n}" for n in ids],
            "transaction_id": [f"t{n}" for n in ids],
            "customer_id": rng.integers(0, 250_000, rows),
            "amount": rng.lognormal(3.4, 0.8, rows),
            "event_time": times,
            "day": "2026-03-01",
            "model_name": "fraud_model",
            "model_version": "1",
            "variant": "champion",
            "source": BATCH,
            "score": score,
            "threshold": 0.5,
            "decision": score >= 0.5,
            "logged_at": times,
            "latency_ms": None,
            "error": None,
            "release": None,
        }
    ).cast(LOG_COLUMNS)  # type: ignore[arg-type]
    return frame.with_columns(
        pl.Series(name, rng.random(rows) * 100, dtype=pl.Float64) for name in features
    )
