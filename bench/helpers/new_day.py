"""A new day of customer features, both ways, each in a process of its own.

Today's recomputation reads the 30 days before the day (``customer_features``); the incremental
path (``customer_daily_activity`` of the day, then ``customer_features_incremental``) reads the
day, the three days its windows' edges fall in and the daily activity of the month before, as
the daily runs store it. Each runs in a fresh process, so its peak memory is its own (``VmHWM``
after a reset, minus the RSS before the call), and writes its rows for the parent to compare.
"""

import datetime
import multiprocessing
import time
from pathlib import Path
from typing import Any

import polars as pl

from helpers.memory import run_measured
from helpers.output import progress
from platform_assets.features import engineering as fe
from resources.sources.simulator import CardPaymentsSimulator

VALIDATED = "validated_transactions"
ACTIVITY = "customer_daily_activity"


def day_file(lake: Path, dataset: str, day: datetime.date) -> Path:
    """A day's parquet file of ``dataset``, where the assets keep it."""
    return lake / dataset / f"{day}.parquet"


def _stored(lake: Path, dataset: str, days: list[datetime.date]) -> list[Path]:
    return [path for day in days if (path := day_file(lake, dataset, day)).exists()]


def store_activity(lake: Path, days: list[datetime.date]) -> dict[str, float]:
    """Store ``customer_daily_activity`` of each of ``days``; seconds per day, mean and max."""
    (lake / ACTIVITY).mkdir(exist_ok=True)
    seconds = []
    for day in days:
        start = time.perf_counter()
        activity = fe.customer_daily_activity(pl.scan_parquet(day_file(lake, VALIDATED, day)))
        activity.write_parquet(day_file(lake, ACTIVITY, day))
        seconds.append(time.perf_counter() - start)
    return {"mean_s": sum(seconds) / len(seconds), "max_s": max(seconds)}


def _recompute(lake: Path, day: datetime.date) -> pl.DataFrame:
    history = _stored(lake, VALIDATED, fe.customer_history_days([day]))
    return fe.customer_features(pl.scan_parquet(history), [day])


def _incremental(lake: Path, day: datetime.date) -> pl.DataFrame:
    own = fe.customer_daily_activity(pl.scan_parquet(day_file(lake, VALIDATED, day)))
    own.write_parquet(day_file(lake, ACTIVITY, day))
    edges = pl.scan_parquet(_stored(lake, VALIDATED, fe.customer_edge_days(day)))
    activity = pl.scan_parquet(_stored(lake, ACTIVITY, fe.customer_activity_days(day)))
    return fe.customer_features_incremental(edges, activity, day)


PATHS = {"recomputation": _recompute, "incremental": _incremental}


def _measure(path: str, lake: Path, day: datetime.date, out: Path) -> dict[str, Any]:
    """In the child: one path for ``day``, measured; its rows written to ``out``."""
    rows, figures = run_measured(lambda: PATHS[path](lake, day))
    rows.write_parquet(out)
    return {
        **figures,
        "extra_mb": figures["peak_mb"] - figures["rss_before_mb"],
        "rows": rows.height,
        "rows_mb": rows.estimated_size() / 2**20,
    }


def measure_in_child(path: str, lake: Path, day: datetime.date, out: Path) -> dict[str, Any]:
    """``_measure`` in a fresh process (spawned: nothing of this one's memory comes along)."""
    progress(f"customer rows of {day}: {path}, in a fresh process")
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_measure, (path, lake, day, out))


def max_relative_difference(expected: pl.DataFrame, actual: pl.DataFrame) -> float | None:
    """The largest relative difference of any float, None unless every other value is equal."""
    if expected.schema != actual.schema or expected.height != actual.height:
        return None
    worst = 0.0
    for name, dtype in expected.schema.items():
        a, b = expected[name], actual[name]
        if not (a.is_null() == b.is_null()).all():
            return None
        if not dtype.is_float():
            if not a.equals(b):
                return None
            continue
        difference = ((a - b).abs() / a.abs().clip(lower_bound=1.0)).max()
        worst = max(worst, float(difference or 0.0))  # type: ignore[arg-type]
    return worst


def new_day(lake: Path, day: datetime.date, recompute: bool) -> dict[str, Any]:
    """The day's customer rows by the incremental path, and by the recomputation if asked.

    The lake holds the payments of the day and the days before it; the activity of the days
    before that is not stored yet is stored first, as the daily runs would have stored it.
    """
    before = [
        d
        for d in fe.customer_activity_days(day)
        if day_file(lake, VALIDATED, d).exists() and not day_file(lake, ACTIVITY, d).exists()
    ]
    out: dict[str, Any] = {"day": str(day)}
    if before:
        progress(f"customer_daily_activity of the {len(before)} days before {day}")
        out["activity_per_day"] = store_activity(lake, before)
    out["day_mb"] = pl.read_parquet(day_file(lake, VALIDATED, day)).estimated_size() / 2**20
    out["day_transactions"] = (
        pl.scan_parquet(day_file(lake, VALIDATED, day)).select(pl.len()).collect().item()
    )
    rows = {path: lake / f"{path}-{day}.parquet" for path in PATHS}
    out["incremental"] = measure_in_child("incremental", lake, day, rows["incremental"])
    out["recomputation"] = None
    out["max_relative_difference"] = None
    if recompute:
        out["recomputation"] = measure_in_child("recomputation", lake, day, rows["recomputation"])
        out["max_relative_difference"] = max_relative_difference(
            pl.read_parquet(rows["recomputation"]), pl.read_parquet(rows["incremental"])
        )
    return out


def month_lake(folder: Path, rows_per_day: int, day: datetime.date, seed: int) -> Path:
    """A lake of what the incremental customer rows of ``day`` read, at ``rows_per_day``.

    Every day of the month before is simulated and its activity stored, as the daily runs would;
    only the payments the path reads (the day and its windows' edge days) are kept.
    """
    lake = folder / f"lake-{rows_per_day}"
    (lake / VALIDATED).mkdir(parents=True)
    (lake / ACTIVITY).mkdir()
    simulator = CardPaymentsSimulator(seed=seed, rows_per_day=rows_per_day)
    edges = set(fe.customer_edge_days(day))
    for d in fe.customer_history_days([day]):
        payments = simulator.day(d).transactions
        if d in edges:
            payments.write_parquet(day_file(lake, VALIDATED, d), statistics=True)
        if d != day:
            fe.customer_daily_activity(payments.lazy()).write_parquet(day_file(lake, ACTIVITY, d))
        progress(f"  {rows_per_day:,} a day: simulated {d}", end=False)
        del payments
    return lake


def big_day(folder: Path, rows_per_day: int, day: datetime.date, seed: int) -> dict[str, Any]:
    """A day of ``rows_per_day`` payments by the incremental path alone, from a lake of its own."""
    start = time.perf_counter()
    lake = month_lake(folder, rows_per_day, day, seed)
    prepared_s = time.perf_counter() - start
    result = new_day(lake, day, recompute=False)
    return {**result, "prepare_s": prepared_s}
