"""Benchmark of the feature stage: feature computation, Feast retrieval, materialization, serving.

What is measured, and why:

* **Feature computation** (``customer_features`` and ``merchant_features`` of
  ``platform_assets/features/engineering.py``) over 30 days of 1M simulated transactions a day:
  one call each with all 30 days, their history being those same days, read back from the
  temporary lake's parquet as the assets read it. Wall time, rows out and peak RSS of each call
  (``VmHWM`` with the high-water mark reset before the call through ``/proc/self/clear_refs``;
  ``ru_maxrss`` of the whole process where the kernel refuses the reset). The outputs are written
  as one parquet per day, ``lake/customer_features/<day>.parquet`` and
  ``lake/merchant_features/<day>.parquet``, exactly the files the Feast views read. Feast does
  not compute features, so this step has no Feast counterpart: it is our polars code alone.
  Labels are 1..7 days late (maturity 7 days) and the merchant risk window is 14 days, so
  matured labels exist within the 30 days.
* **Historical retrieval**: ``FeatureStoreResource.historical_features`` of the whole
  ``fraud_model_v2`` service (both views and the on-demand view) for 1M labelled transactions of
  the latest days whose labels have matured (entity rows from ``labelled_transactions``, sliced
  to 1M rows), through both engines, side by side on the same entity frame: ``engine="polars"``
  (ours: as-of joins with Feast's rules, the on-demand view computed by Feast's own transform)
  and ``engine="feast"`` (Feast's ``get_historical_features`` with the DuckDB offline store).
  Target: a training set of 1M rows in <= 60 s, met or not by the polars engine, the training set
  asset's default engine. A tenth and three tenths of the rows are retrieved
  first, so the scaling shows; at each size both engines get the same frame, are timed (wall
  time and peak RSS) separately, and where both completed their outputs are compared row for
  row (``ours.equals(feast)``, nulls equal; the differing rows and columns are counted, so a
  mismatch shows as more than a boolean). A Feast size that fails (DuckDB out of memory and
  spill space) is reported with its error and ends Feast's ladder; the polars engine still runs
  every size. Feast's DuckDB join is a range join on the entity key followed by a
  ``ROW_NUMBER`` window: every entity row meets every feature row of its customer within the
  view's 30-day TTL (about 460 on this simulator's heavy-tailed customers), so its memory grows
  with entity rows times customer activity. The offline store's DuckDB connection gets a memory
  limit (``--duckdb-memory-limit``, 12GB) and its spill files go to the bench's temporary
  folder with a cap (``--duckdb-max-spill``, 40GB) instead of ``.tmp`` in the repository.
* **Materialization**: ``FeatureStoreResource.materialize`` (Feast's ``materialize`` into the
  SQLite online store) first up to the start of the last day (the backfill, timed separately),
  then up to its end: the second call is "a day". Entities written are those Feast's
  ``pull_latest_from_table_or_query`` returns: one latest row per entity with a row in the
  interval, ends included.
* **Online serving**: Feast's ``FeatureStore.get_online_features`` called directly, after a
  warm-up, for one entity per call with (a) the full ``fraud_model_v2`` service, including the
  on-demand view ``transaction_context`` and its request fields, and (b) only the two stored
  views' features (no request data), so the on-demand view's cost shows; then 100 entities per
  call. Entities are random customers and merchants of the last day. Target: 1-entity p99 <= 5 ms.
* **Training/serving skew**: for 100 transactions of the last day, every feature of the service
  read online equals the offline (point-in-time) value at the materialization end, compared with
  ``platform_assets.features.skew.feature_mismatches`` as the blocking skew check does.

Which path each step takes: feature computation is ours (polars) alone, because Feast computes
no features, so there is no Feast path to put next to it; historical retrieval runs both our
polars engine and Feast's API on the same data, with row-for-row equality checked;
materialization, online serving and the skew check (both of its sides) go through Feast's own
API only.

JSON keys of historical retrieval: ``historical_s``, ``historical_polars_s``,
``historical_rows_per_s`` and ``historical_error`` are the polars engine at the full size
(``--historical-rows``); ``historical_feast_s`` is Feast's API at the full size (null if it
failed or was not attempted), ``historical_feast_error`` the error that ended Feast's ladder;
``historical_completed_rows`` and ``historical_completed_s`` are Feast's largest completed size;
``historical_equal_rows`` is the equality of the two engines' outputs at the largest size both
completed (``historical_equal_at_rows``; null if none), ``historical_differing_rows`` the rows
that differ there; ``historical_ladder`` holds per size both engines' figures, the speed-up and
the comparison.

Run from the project root: ``.venv/bin/python bench/features.py`` (about seven minutes on two
cores, with a peak of about 15 GB of memory and 40 GB of temporary disk) or ``--quick`` (50k rows
a day, under a minute) for a smoke run. The tables go to stdout, progress to stderr, and the last
line of stdout is one JSON object with every figure.
"""

import argparse
import contextlib
import datetime
import json
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from helpers.datasets import (
    MATURITY_DAYS,
    RISK_WINDOW_DAYS,
    SEED,
    calendar,
    compute_features,
    generate,
    historical_entities,
    online_requests,
    scan,
)
from helpers.memory import run_measured
from helpers.new_day import big_day, new_day
from helpers.output import feast_output, progress
from helpers.tables import cell, print_table

from platform_assets.features import engineering as fe
from platform_assets.features.skew import feature_mismatches
from resources.feature_store import Engine, FeatureStoreResource

FIRST_DAY = datetime.date(2026, 3, 1)
CUSTOMER_VIEW = "customer_behaviour"
MERCHANT_VIEW = "merchant_risk"

TARGET_HISTORICAL_S = 60.0
TARGET_ONLINE_1_P99_MS = 5.0
# A new day of customer rows (1M payments), and its peak extra memory against the day's data.
TARGET_NEW_DAY_S = 5.0
TARGET_NEW_DAY_MEMORY = 2.0

WARMUP_CALLS = 100
QUICK = {
    "rows_per_day": 50_000,
    "historical_rows": 100_000,
    "online_calls": 300,
    "big_day_rows": 500_000,
}
FULL = {
    "rows_per_day": 1_000_000,
    "historical_rows": 1_000_000,
    "online_calls": 2_000,
    "big_day_rows": 10_000_000,
}
# Shares of --historical-rows retrieved, in this order; the last is the figure of the target.
HISTORICAL_LADDER = (0.1, 0.3, 1.0)


# 2. Historical retrieval (ours: polars engine; Feast's API side by side) --------------------------


def historical(
    feature_store: FeatureStoreResource, entities: pl.DataFrame, engine: Engine
) -> tuple[pl.DataFrame | None, dict[str, Any]]:
    """The point-in-time join of the service for ``entities`` through ``engine``, one timed call.

    Returns the joined frame (None on failure) and its figures. A failure (for Feast, DuckDB out
    of memory or of spill space) is a result too: its error, time and peak memory are returned
    in place of the figures of the rows.
    """
    label = "ours, polars as-of join" if engine == "polars" else "Feast, DuckDB"
    progress(f"historical retrieval of {entities.height:,} entity rows ({label})")

    def retrieve() -> pl.DataFrame | Exception:
        try:
            return feature_store.historical_features(entities, engine=engine)
        except Exception as error:
            return error

    with feast_output():
        rows, measured = run_measured(retrieve)
    if isinstance(rows, Exception):
        message = f"{type(rows).__name__}: {str(rows).splitlines()[0]}"
        progress(f"{engine} FAILED after {measured['seconds']:.0f} s: {message}")
        return None, {**measured, "error": message}
    progress(f"  {engine}: {measured['seconds']:.1f} s", end=False)
    return rows, {
        **measured,
        "error": None,
        "rows_out": rows.height,
        "with_customer_features": rows.filter(pl.col("txn_count_30d").is_not_null()).height,
        "with_merchant_features": rows.filter(pl.col("merchant_txn_count_7d").is_not_null()).height,
    }


def compare(ours: pl.DataFrame, feast: pl.DataFrame) -> dict[str, Any]:
    """Row-for-row comparison of the two engines' outputs.

    ``equal`` is ``ours.equals(feast)`` (nulls equal; it ignores dtypes, which are compared
    apart as ``dtype_differences``). With the same columns and heights, every value is compared
    in place (``ne_missing``: a null differs from a value, two nulls do not): the rows with any
    differing value, the differing values per column, and the first such row.
    """
    out: dict[str, Any] = {
        "equal": ours.equals(feast),
        "differing_rows": None,
        "differing_by_column": {},
        "first_differing_row": None,
        "dtype_differences": {
            name: f"{dtype} vs {feast.schema[name]}"
            for name, dtype in ours.schema.items()
            if name in feast.schema and feast.schema[name] != dtype
        },
        "note": None,
    }
    if ours.columns != feast.columns or ours.height != feast.height:
        out["note"] = (
            f"not comparable in place: {ours.height:,} x {ours.columns} vs "
            f"{feast.height:,} x {feast.columns}"
        )
        return out
    differs = pl.DataFrame({name: ours[name].ne_missing(feast[name]) for name in ours.columns})
    any_row = differs.select(pl.any_horizontal(pl.all())).to_series()
    out["differing_rows"] = int(any_row.sum())
    out["differing_by_column"] = {
        name: int(differs[name].sum()) for name in differs.columns if differs[name].any()
    }
    if out["differing_rows"]:
        out["first_differing_row"] = any_row.arg_max()
    return out


def historical_ladder(
    feature_store: FeatureStoreResource, entities: pl.DataFrame
) -> list[dict[str, Any]]:
    """Both engines at each share of ``HISTORICAL_LADDER`` of ``entities``, the same frame each.

    Smaller sizes first, so how the joins scale shows next to the full figure. A Feast failure
    ends Feast's ladder (the larger sizes would fail too); the polars engine runs every size.
    """
    ladder = []
    feast_failed = False
    for share in HISTORICAL_LADDER:
        frame = entities.tail(int(entities.height * share))
        size: dict[str, Any] = {
            "rows_in": frame.height,
            "days": frame[fe.TIMESTAMP].dt.date().n_unique(),
            "frauds": int(frame["is_fraud"].sum()),
            "features": len(feature_store.feature_names()),
            "feast": None,
            "comparison": None,
        }
        ours, size["polars"] = historical(feature_store, frame, "polars")
        if not feast_failed:
            feast, size["feast"] = historical(feature_store, frame, "feast")
            feast_failed = feast is None
            if ours is not None and feast is not None:
                size["comparison"] = compare(ours, feast)
                progress(f"  equal: {size['comparison']['equal']}", end=False)
            del feast
        del ours
        ladder.append(size)
    return ladder


# 3. Materialization (Feast) ---------------------------------------------------------------------


def materialize(
    feature_store: FeatureStoreResource, lake: Path, days: list[datetime.date]
) -> dict[str, Any]:
    """Materialize up to the start of the last day, then the last day; time both calls."""
    last_start = fe.day_start(days[-1])
    last_end = last_start + datetime.timedelta(days=1)
    out: dict[str, Any] = {}
    for name, end in (("backfill", last_start), ("day", last_end)):
        progress(f"materialize ({name}) up to {end.isoformat()}")
        with feast_output():
            intervals, measured = run_measured(lambda end=end: feature_store.materialize(end))
        out[name] = {**measured, "intervals": intervals, "written": {}}
        for view, key, dataset in (
            (CUSTOMER_VIEW, "customer_id", "customer_features"),
            (MERCHANT_VIEW, "merchant_id", "merchant_features"),
        ):
            if not intervals.get(view):
                out[name]["written"][view] = {"rows": 0, "entities": 0}
                continue
            begin, finish = intervals[view]
            # Feast's pull_latest_from_table_or_query: rows with begin <= timestamp <= finish.
            in_interval = scan(lake, dataset).filter(
                pl.col(fe.TIMESTAMP).is_between(begin, finish, closed="both")
            )
            counts = in_interval.select(rows=pl.len(), entities=pl.col(key).n_unique()).collect()
            out[name]["written"][view] = counts.row(0, named=True)
        out[name]["store_entities"] = _online_store_entities(feature_store)
    return out


def _online_store_entities(feature_store: FeatureStoreResource) -> dict[str, int]:
    """Entities per view in the SQLite online store, read from its tables."""
    path = feature_store.store().config.online_store.path
    counts = {}
    with contextlib.closing(sqlite3.connect(path)) as connection:
        tables = [r[0] for r in connection.execute("SELECT name FROM sqlite_master")]
        for view in (CUSTOMER_VIEW, MERCHANT_VIEW):
            (table,) = [t for t in tables if t.endswith(f"_{view}")]
            query = f'SELECT COUNT(DISTINCT entity_key) FROM "{table}"'
            counts[view] = connection.execute(query).fetchone()[0]
    return counts


# 4. Online serving (Feast) ----------------------------------------------------------------------


def _views_only_refs(feature_store: FeatureStoreResource) -> list[str]:
    """``view:feature`` references of the service's two stored views, without on-demand ones."""
    return [
        f"{projection.name}:{feature.name}"
        for projection in feature_store.service().feature_view_projections
        if projection.name in (CUSTOMER_VIEW, MERCHANT_VIEW)
        for feature in projection.features
    ]


def _latencies_ms(call: Callable[[list[dict[str, Any]]], Any], batches: list[list[dict]]) -> dict:
    """Time ``call`` on each batch after ``WARMUP_CALLS`` untimed calls; return ms statistics."""
    for batch in batches[:WARMUP_CALLS]:
        call(batch)
    times = []
    for batch in batches:
        start = time.perf_counter_ns()
        call(batch)
        times.append((time.perf_counter_ns() - start) / 1e6)
    values = np.array(times)
    return {
        "calls": len(times),
        "p50_ms": float(np.percentile(values, 50)),
        "p99_ms": float(np.percentile(values, 99)),
        "mean_ms": float(values.mean()),
        "max_ms": float(values.max()),
    }


def online(
    feature_store: FeatureStoreResource,
    requests: list[dict[str, Any]],
    calls: int,
    batch_calls: int,
    batch_size: int,
) -> dict[str, Any]:
    """Latency of Feast's ``get_online_features``: 1 entity (service, views only) and a batch."""
    store = feature_store.store()
    service = feature_store.service()
    refs = _views_only_refs(feature_store)
    keys_only = [
        {"customer_id": r["customer_id"], "merchant_id": r["merchant_id"]} for r in requests
    ]
    rng = random.Random(SEED)

    def service_call(rows: list[dict]) -> Any:
        return store.get_online_features(features=service, entity_rows=rows).to_dict()

    def views_call(rows: list[dict]) -> Any:
        return store.get_online_features(features=refs, entity_rows=rows).to_dict()

    def batches(source: list[dict], size: int, count: int) -> list[list[dict]]:
        return [rng.sample(source, size) for _ in range(count)]

    out = {}
    progress(f"online: {calls} calls x 1 entity, fraud_model_v2 (with on-demand view)")
    out["service_1"] = _latencies_ms(service_call, [[r] for r in requests[:calls]])
    progress(f"online: {calls} calls x 1 entity, the two views only")
    out["views_1"] = _latencies_ms(views_call, [[r] for r in keys_only[:calls]])
    progress(f"online: {batch_calls} calls x {batch_size} entities, fraud_model_v2")
    out["service_batch"] = _latencies_ms(service_call, batches(requests, batch_size, batch_calls))
    progress(f"online: {batch_calls} calls x {batch_size} entities, the two views only")
    out["views_batch"] = _latencies_ms(views_call, batches(keys_only, batch_size, batch_calls))
    out["features_service"] = len(feature_store.feature_names())
    out["features_views"] = len(refs)
    return out


# Skew: online == offline at the materialization end ---------------------------------------------


def skew(
    feature_store: FeatureStoreResource, requests: list[dict[str, Any]], as_of: datetime.datetime
) -> dict[str, Any]:
    """Serve and replay the same requests and compare every feature of the service."""
    sample = pl.DataFrame(requests).with_columns(
        pl.lit(as_of, dtype=pl.Datetime("us", "UTC")).alias(fe.TIMESTAMP)
    )
    with feast_output():
        served = feature_store.online_features(sample.drop(fe.TIMESTAMP).to_dicts())
        replayed = feature_store.historical_features(sample.with_row_index("sample_row"))
    replayed = replayed.sort("sample_row")
    features = feature_store.feature_names()
    mismatches = feature_mismatches(served, replayed, features)
    return {
        "entities": sample.height,
        "features": len(features),
        "values": sample.height * len(features),
        "mismatches": mismatches.height,
        "mismatching_features": sorted(set(mismatches["feature"].to_list())),
    }


# Orchestration ----------------------------------------------------------------------------------


def configure_duckdb(spill: Path, memory_limit: str, max_spill: str) -> dict[str, str]:
    """Bound the DuckDB connection Feast's offline store runs on, and keep its spill files here.

    Feast's DuckDB store runs every query on ibis' default DuckDB connection. Left alone, DuckDB
    may take 80 % of the machine's memory and spills to ``.tmp`` under the working directory
    (the repository); the bench puts the spill files in its temporary folder, caps them, and
    caps memory so a shared machine survives the point-in-time join of 1M rows.
    """
    import ibis

    spill.mkdir(parents=True)
    connection = ibis.get_backend()
    connection.raw_sql(f"SET temp_directory = '{spill}'")
    connection.raw_sql(f"SET max_temp_directory_size = '{max_spill}'")
    if memory_limit:
        connection.raw_sql(f"SET memory_limit = '{memory_limit}'")
    names = ("memory_limit", "threads", "temp_directory", "max_temp_directory_size")
    return {
        name: str(connection.raw_sql(f"SELECT current_setting('{name}')").fetchone()[0])
        for name in names
    }


def measure_new_days(
    args: argparse.Namespace, days: list[datetime.date], lake: Path, out: dict[str, Any]
) -> None:
    """1b. The last day of customer rows both ways, then a big day by the incremental path."""
    out["new_day"] = new_day(lake, days[-1], recompute=True)
    if args.big_day_rows:
        out["big_day"] = big_day(lake.parent, args.big_day_rows, days[-1], SEED)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run every step on a temporary lake and return the raw measurements."""
    days = calendar(FIRST_DAY, args.days)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-features-", dir="/tmp") as tmp:
        lake = Path(tmp) / "lake"
        progress(f"generating {args.days} days x {args.rows_per_day:,} rows into {lake}")
        out["generate"] = generate(lake, args.rows_per_day, days)

        measure_new_days(args, days, lake, out)
        if args.new_day_only:
            return out
        # 1. Feature computation, ours alone (Feast computes no features): timed per table
        # inside helpers.datasets.compute_features, which training.py builds its data with too.
        out["compute"] = compute_features(lake, days)

        out["duckdb"] = configure_duckdb(
            Path(tmp, "duckdb"), args.duckdb_memory_limit, args.duckdb_max_spill
        )
        progress("feast apply")
        feature_store = FeatureStoreResource(lake_root=str(lake), state_dir=str(Path(tmp, "feast")))
        with feast_output():
            feature_store.apply()

        out["materialize"] = materialize(feature_store, lake, days)
        as_of = fe.day_start(days[-1]) + datetime.timedelta(days=1)

        requests = online_requests(lake, days[-1], max(args.online_calls, args.skew_sample))
        progress(f"skew: {args.skew_sample} entities online vs offline at {as_of.isoformat()}")
        out["skew"] = skew(feature_store, requests[: args.skew_sample], as_of)

        entities = historical_entities(lake, days, args.historical_rows)
        out["historical"] = historical_ladder(feature_store, entities)
        del entities

        out["online"] = online(
            feature_store, requests, args.online_calls, args.batch_calls, args.batch_size
        )
    return out


# Report ----------------------------------------------------------------------------------------


def _engine_cell(run: dict[str, Any] | None) -> Any:
    """One engine's seconds, ``FAILED after N s: <error type>`` or ``not run``."""
    if run is None:
        return "not run"
    if run["error"]:
        return f"FAILED after {run['seconds']:.0f} s: {run['error'].split(':')[0]}"
    return run["seconds"]


def _rate(run: dict[str, Any] | None, json: bool = False) -> Any:
    """Rows out per second of a completed run; ``-`` (None in the JSON) otherwise."""
    if run is None or run["error"]:
        return None if json else "-"
    rate = run["rows_out"] / run["seconds"]
    return round(rate) if json else rate


def _round(run: dict[str, Any] | None, key: str) -> float | None:
    """``run[key]`` to 3 decimals for the JSON, None when the run failed or did not run."""
    return None if not run or run["error"] else round(run[key], 3)


def _speedup(size: dict[str, Any], json: bool = False) -> Any:
    """Feast's seconds over the polars engine's, where both completed; None otherwise."""
    ours, feast = size["polars"], size["feast"]
    if not feast or feast["error"] or ours["error"]:
        return None
    ratio = feast["seconds"] / ours["seconds"]
    return round(ratio, 1) if json else f"{ratio:,.1f}x"


def _engine_json(run: dict[str, Any] | None) -> dict[str, Any] | None:
    """One engine's figures at one size for the JSON line; None where it was not run."""
    if run is None:
        return None
    return {
        "seconds": round(run["seconds"], 3),
        "rows_per_s": _rate(run, json=True),
        "peak_rss_mb": round(run["peak_mb"], 1),
        "error": run["error"],
    }


def _differing(comparison: dict[str, Any] | None) -> Any:
    """The comparison's differing rows, ``n/a`` when not comparable in place, ``-`` if none."""
    if comparison is None:
        return "-"
    rows = comparison["differing_rows"]
    return "n/a" if rows is None else rows


def report_new_days(args: argparse.Namespace, m: dict[str, Any]) -> dict[str, Any]:
    """Print the new day's table; return its JSON figures, targets included."""
    nd, big = m["new_day"], m.get("big_day")
    inc, rec = nd["incremental"], nd["recomputation"]

    def line(name: str, day: dict[str, Any], x: dict[str, Any] | None) -> list[Any]:
        if x is None:
            return [name, day["day_transactions"], day["day_mb"], "skipped", "-", "-", "-", "-"]
        return [name, day["day_transactions"], day["day_mb"], x["seconds"], x["extra_mb"],
                x["extra_mb"] / day["day_mb"], x["rows"], x["rows_mb"]]  # fmt: skip

    rows = [
        line("today's recomputation (customer_features, 30 days of payments)", nd, rec),
        line("incremental (the day's activity + customer_features_incremental)", nd, inc),
    ]
    if big:
        rows.append(line("incremental, big day", big, big["incremental"]))
        # Today's path holds the month's payments: its peak scales with them.
        estimate = rec["extra_mb"] * big["day_transactions"] / nd["day_transactions"]
        rows.append(
            line(f"recomputation, big day (estimated peak {estimate / 1024:,.1f} GB)", big, None)
        )
    print_table(
        f"1b. A new day of customer features ({nd['day']}): today's recomputation next to the "
        "incremental path, each in a fresh process; extra = peak RSS - RSS before",
        ["path", "payments of the day", "day's data MB", "seconds", "peak extra MB",
         "extra / day's data", "rows out", "rows out MB"],
        rows,
    )  # fmt: skip
    activity = nd.get("activity_per_day") or {"mean_s": 0.0, "max_s": 0.0}
    print(
        f"customer_daily_activity of a day before: {activity['mean_s']:.2f} s mean, "
        f"{activity['max_s']:.2f} s max; rows of both paths equal (floats within a relative "
        f"{nd['max_relative_difference']!r}; None: a value differs)"
    )
    scale = "" if args.rows_per_day >= 1_000_000 else " (REDUCED: the targets are for 1M)"
    targets = {
        f"new day s <= {TARGET_NEW_DAY_S}{scale}": inc["seconds"] <= TARGET_NEW_DAY_S,
        f"new day peak extra <= {TARGET_NEW_DAY_MEMORY} x the day's data{scale}": (
            inc["extra_mb"] <= TARGET_NEW_DAY_MEMORY * nd["day_mb"]
        ),
        "new day rows equal": nd["max_relative_difference"] is not None
        and nd["max_relative_difference"] <= 1e-9,
    }
    if args.big_day_rows:
        targets[f"a {args.big_day_rows:,}-payment day completes"] = big is not None

    def figures(x: dict[str, Any] | None) -> dict[str, Any] | None:
        if x is None:
            return None
        return {k: round(x[k], 3) for k in ("seconds", "extra_mb", "peak_mb", "rows_mb")}

    return {
        "new_day_transactions": nd["day_transactions"],
        "new_day_data_mb": round(nd["day_mb"], 1),
        "new_day_incremental": figures(inc),
        "new_day_recomputation": figures(rec),
        "new_day_max_relative_difference": nd["max_relative_difference"],
        "new_day_activity_s": round(activity["mean_s"], 3),
        "big_day_transactions": big["day_transactions"] if big else None,
        "big_day_data_mb": round(big["day_mb"], 1) if big else None,
        "big_day_incremental": figures(big["incremental"]) if big else None,
        "targets": targets,
    }


def report(args: argparse.Namespace, m: dict[str, Any]) -> dict[str, Any]:
    """Print the tables and return the figures of the JSON line."""
    new_days = report_new_days(args, m)
    if args.new_day_only:
        met = all(new_days["targets"].values())
        print("all targets met" if met else "NOT all targets met")
        return {"bench": "features", "rows_per_day": args.rows_per_day, **new_days,
                "targets_met": met}  # fmt: skip
    generated, compute, ladder = m["generate"], m["compute"], m["historical"]
    cust, merch = compute["customer"], compute["merchant"]
    day, backfill = m["materialize"]["day"], m["materialize"]["backfill"]
    on, sk = m["online"], m["skew"]
    # The polars engine runs every size: the last is the full size, the figure of the target.
    full = ladder[-1]
    ours_full, feast_full = full["polars"], full["feast"]
    feast_done = [x for x in ladder if x["feast"] and not x["feast"]["error"]]
    feast_largest = feast_done[-1] if feast_done else None
    feast_failed = next((x for x in ladder if x["feast"] and x["feast"]["error"]), None)
    compared = [x for x in ladder if x["comparison"]]
    last_compared = compared[-1] if compared else None

    print_table(
        f"Data: {args.days} days x {args.rows_per_day:,} rows/day, simulated into a temporary "
        f"lake (labels 1..{MATURITY_DAYS} days late)",
        ["transactions", "chargebacks", "generate + write s"],
        [[generated["transactions"], generated["chargebacks"], generated["seconds"]]],
    )
    print_table(
        f"1. Feature computation, ours (polars), one call over all {args.days} days - Feast has "
        "no feature computation, so no Feast path to compare with",
        ["function", "seconds", "rows out", "entities", "rows/s", "RSS before MB",
         "peak RSS MB", "write s", "files"],
        [
            [name, x["seconds"], x["rows"], x["entities"], x["rows"] / x["seconds"],
             x["rss_before_mb"], x["peak_mb"], x["write_s"], x["files"]]
            for name, x in (
                ("customer_features", cust),
                (f"merchant_features (maturity {MATURITY_DAYS} d, risk window "
                 f"{RISK_WINDOW_DAYS} d)", merch),
            )
        ],
    )  # fmt: skip
    print(
        "peak RSS = VmHWM of the whole process during the call (high-water mark reset before "
        f"it: {cell(cust['reset'] and merch['reset'])}); merchant rows with matured labels: "
        f"{merch['with_matured_labels']:,}"
    )
    print_table(
        "2. Historical retrieval of fraud_model_v2 (incl. the on-demand view), the same entity "
        'frames through ours (engine="polars", as-of join) and Feast\'s API (engine="feast", '
        "get_historical_features, DuckDB offline store); speed-up = Feast s / polars s",
        ["entity rows", "matured days", "frauds", "features", "polars s", "polars rows/s",
         "polars peak RSS MB", "Feast s", "Feast peak RSS MB", "speed-up", "equal?",
         "differing rows", "rows out", "rows with customer feats", "rows with merchant feats"],
        [
            [x["rows_in"], x["days"], x["frauds"], x["features"], _engine_cell(x["polars"]),
             _rate(x["polars"]), x["polars"]["peak_mb"], _engine_cell(x["feast"]),
             x["feast"]["peak_mb"] if x["feast"] else "-", _speedup(x) or "-",
             x["comparison"]["equal"] if x["comparison"] else "-",
             _differing(x["comparison"]),
             x["polars"].get("rows_out", "-"), x["polars"].get("with_customer_features", "-"),
             x["polars"].get("with_merchant_features", "-")]
            for x in ladder
        ],
    )  # fmt: skip
    print(
        "rows out and rows with features: the polars engine's output (where equal, Feast's is the "
        "same); equal? = ours.equals(feast), nulls equal; differing rows = rows with any value "
        "differing in place (ne_missing)"
    )
    for x in ladder:
        for engine in ("polars", "feast"):
            if x[engine] and x[engine]["error"]:
                print(
                    f"{engine} at {x['rows_in']:,} rows FAILED after "
                    f"{x[engine]['seconds']:.0f} s: {x[engine]['error']}"
                )
    skipped = [x["rows_in"] for x in ladder if x["feast"] is None]
    if skipped:
        print(
            "Feast not attempted after its failure: "
            f"{', '.join(f'{n:,}' for n in skipped)} rows (the polars engine ran them)"
        )
    print(
        "compared row for row at: "
        + (
            ", ".join(f"{x['rows_in']:,} rows" for x in compared)
            or "no size (Feast completed none)"
        )
    )
    for x in compared:
        c = x["comparison"]
        if c["dtype_differences"]:
            print(f"TYPES DIFFER at {x['rows_in']:,} rows (equals ignores them): "
                  f"{c['dtype_differences']}")  # fmt: skip
        if not c["equal"]:
            print(
                f"NOT EQUAL at {x['rows_in']:,} rows: differing rows {_differing(c)}, "
                f"values differing per column {c['differing_by_column'] or 'none'}, first "
                f"differing row {c['first_differing_row']}, dtypes differing "
                f"{c['dtype_differences'] or 'none'}" + (f"; {c['note']}" if c["note"] else "")
            )
    print(
        "DuckDB of the offline store: "
        + ", ".join(f"{name} {value}" for name, value in m["duckdb"].items())
    )
    print_table(
        "3. Materialization into the SQLite online store, Feast materialize "
        "(entities written = latest row per entity in the interval)",
        ["call", "up to", "seconds", "peak RSS MB", "customer rows", "customers written",
         "merchant rows", "merchants written", "customers in store", "merchants in store"],
        [
            [name, str(x["intervals"][CUSTOMER_VIEW][1]) if x["intervals"].get(CUSTOMER_VIEW)
             else "(current)", x["seconds"], x["peak_mb"], x["written"][CUSTOMER_VIEW]["rows"],
             x["written"][CUSTOMER_VIEW]["entities"], x["written"][MERCHANT_VIEW]["rows"],
             x["written"][MERCHANT_VIEW]["entities"], x["store_entities"][CUSTOMER_VIEW],
             x["store_entities"][MERCHANT_VIEW]]
            for name, x in (("backfill: to the start of the last day", backfill),
                            ("a day: to the end of the last day", day))
        ],
    )  # fmt: skip
    print_table(
        "4. Online serving, Feast FeatureStore.get_online_features (SQLite), "
        f"after {WARMUP_CALLS} warm-up calls",
        ["request", "features", "entities/call", "calls", "p50 ms", "p99 ms", "mean ms",
         "max ms"],
        [
            [label, on[f"features_{kind}"], size, x["calls"], x["p50_ms"], x["p99_ms"],
             x["mean_ms"], x["max_ms"]]
            for label, kind, size, x in (
                ("fraud_model_v2 (views + on-demand)", "service", 1, on["service_1"]),
                ("two views only (view:feature refs)", "views", 1, on["views_1"]),
                ("fraud_model_v2 (views + on-demand)", "service", args.batch_size,
                 on["service_batch"]),
                ("two views only (view:feature refs)", "views", args.batch_size,
                 on["views_batch"]),
            )
        ],
    )  # fmt: skip
    ondemand_ms = on["service_1"]["p50_ms"] - on["views_1"]["p50_ms"]
    print(f"on-demand view transaction_context adds ~{ondemand_ms:.3f} ms at p50 (1 entity)")
    print_table(
        "Training/serving skew: online (get_online_features) vs offline "
        "(get_historical_features) at the materialization end",
        ["entities", "features", "values compared", "mismatches", "mismatching features"],
        [[sk["entities"], sk["features"], sk["values"], sk["mismatches"],
          ", ".join(sk["mismatching_features"]) or "none"]],
    )  # fmt: skip

    scale = "" if args.historical_rows >= 1_000_000 else " (REDUCED: the target is for 1M rows)"
    if feast_full is None:
        failed_at = feast_failed["rows_in"] if feast_failed else 0
        feast_value: Any = f"not run (failed at {failed_at:,} rows)"
    else:
        feast_value = _engine_cell(feast_full)
    equal_value: Any = (
        all(x["comparison"]["equal"] for x in compared)
        if compared
        else "not compared (Feast completed no size)"
    )
    runs = [e for x in ladder for e in (x["polars"], x["feast"]) if e and not e["error"]]
    checks = [
        ("1. features", "ours (polars)", "customer_features s", cust["seconds"], None),
        ("1. features", "ours (polars)", "merchant_features s", merch["seconds"], None),
        ("1. features", "ours (polars)", "peak RSS MB", max(cust["peak_mb"], merch["peak_mb"]),
         None),
        ("2. historical", 'ours (engine="polars")',
         f"training set for {args.historical_rows:,} rows, s{scale}", _engine_cell(ours_full),
         ("<=", TARGET_HISTORICAL_S)),
        ("2. historical", "Feast API", f"{args.historical_rows:,} rows, s", feast_value, None),
        ("2. historical", "Feast API",
         f"largest completed: {feast_largest['rows_in']:,} rows, s" if feast_largest
         else "largest completed", feast_largest["feast"]["seconds"] if feast_largest
         else "none completed", None),
        ("2. historical", "ours vs Feast API",
         "equal row for row (ours.equals(feast)), every size both completed", equal_value,
         ("==", True)),
        ("2. historical", "ours and Feast API", "rows out == entity rows, every completed run",
         bool(runs) and all(x["rows_out"] == y["rows_in"] for y in ladder
                            for x in (y["polars"], y["feast"]) if x and not x["error"]),
         ("==", True)),
        ("2. historical", 'ours (engine="polars")',
         f"peak RSS MB, {full['rows_in']:,} rows", ours_full["peak_mb"], None),
        ("2. historical", "Feast API",
         f"peak RSS MB, {full['rows_in']:,} rows" if feast_full else "peak RSS MB",
         feast_full["peak_mb"] if feast_full else "not run", None),
        ("3. materialize", "Feast API", "a day, s", day["seconds"], None),
        ("4. online", "Feast API", "1 entity, fraud_model_v2 p99 ms", on["service_1"]["p99_ms"],
         ("<=", TARGET_ONLINE_1_P99_MS)),
        ("4. online", "Feast API", "1 entity, views only p99 ms", on["views_1"]["p99_ms"], None),
        ("4. online", "Feast API", f"{args.batch_size} entities, fraud_model_v2 p99 ms",
         on["service_batch"]["p99_ms"], None),
        ("skew", "Feast API both sides", "online != offline values", sk["mismatches"], ("==", 0)),
    ]  # fmt: skip
    peaks = [cust["peak_mb"], merch["peak_mb"], backfill["peak_mb"], day["peak_mb"]]
    peaks += [e["peak_mb"] for x in ladder for e in (x["polars"], x["feast"]) if e]
    targets: dict[str, bool] = dict(new_days["targets"])
    rows = []
    for step, path, figure, value, target in checks:
        if target is None:
            rows.append([step, path, figure, value, "-", "-"])
            continue
        op, limit = target
        # A string value is a failed or skipped step.
        met = not isinstance(value, str) and (value <= limit if op == "<=" else value == limit)
        targets[f"{figure} {op} {cell(limit)}"] = met
        rows.append([step, path, figure, value, f"{op} {cell(limit)}", "MET" if met else "NOT MET"])
    print_table(
        "Summary (feature computation is ours: Feast computes no features; historical retrieval: "
        "ours side by side with Feast's API, equality checked; every other step is Feast's own "
        "API)",
        ["step", "path", "figure", "value", "target", "met?"],
        rows,
    )
    print("all targets met" if all(targets.values()) else "NOT all targets met")

    return {
        "bench": "features",
        "quick": args.quick,
        "rows_per_day": args.rows_per_day,
        "days": args.days,
        "transactions": generated["transactions"],
        "generate_s": round(generated["seconds"], 2),
        "customer_features_s": round(cust["seconds"], 3),
        "customer_features_rows": cust["rows"],
        "customer_features_peak_rss_mb": round(cust["peak_mb"], 1),
        "merchant_features_s": round(merch["seconds"], 3),
        "merchant_features_rows": merch["rows"],
        "merchant_features_peak_rss_mb": round(merch["peak_mb"], 1),
        "peak_rss_mb": round(max(cust["peak_mb"], merch["peak_mb"]), 1),
        "peak_rss_reset": cust["reset"] and merch["reset"],
        "historical_rows": args.historical_rows,
        # historical_s, _rows_per_s, _error: the polars engine at the full size (the target).
        "historical_s": _round(ours_full, "seconds"),
        "historical_polars_s": _round(ours_full, "seconds"),
        "historical_rows_per_s": _rate(ours_full, json=True),
        "historical_error": ours_full["error"],
        "historical_polars_peak_rss_mb": round(ours_full["peak_mb"], 1),
        "historical_feast_s": _round(feast_full, "seconds"),
        "historical_feast_peak_rss_mb": round(feast_full["peak_mb"], 1) if feast_full else None,
        "historical_feast_error": feast_failed["feast"]["error"] if feast_failed else None,
        "historical_feast_error_rows": feast_failed["rows_in"] if feast_failed else None,
        "historical_speedup": _speedup(full, json=True),
        # Feast's largest completed size.
        "historical_completed_rows": feast_largest["rows_in"] if feast_largest else 0,
        "historical_completed_s": _round(feast_largest and feast_largest["feast"], "seconds"),
        "historical_equal_rows": last_compared["comparison"]["equal"] if last_compared else None,
        "historical_equal_at_rows": last_compared["rows_in"] if last_compared else None,
        "historical_differing_rows": (
            last_compared["comparison"]["differing_rows"] if last_compared else None
        ),
        "historical_equal_every_compared_size": equal_value if compared else None,
        "historical_ladder": [
            {
                "rows": x["rows_in"],
                "polars": _engine_json(x["polars"]),
                "feast": _engine_json(x["feast"]),
                "speedup": _speedup(x, json=True),
                "equal": x["comparison"]["equal"] if x["comparison"] else None,
                "differing_rows": x["comparison"]["differing_rows"] if x["comparison"] else None,
                "dtype_differences": (
                    x["comparison"]["dtype_differences"] if x["comparison"] else None
                ),
                "differing_by_column": (
                    x["comparison"]["differing_by_column"] if x["comparison"] else None
                ),
            }
            for x in ladder
        ],
        "duckdb_memory_limit": m["duckdb"]["memory_limit"],
        "materialize_backfill_s": round(backfill["seconds"], 3),
        "materialize_day_s": round(day["seconds"], 3),
        "materialize_backfill_peak_rss_mb": round(backfill["peak_mb"], 1),
        "materialize_day_peak_rss_mb": round(day["peak_mb"], 1),
        "materialize_day_customers": day["written"][CUSTOMER_VIEW]["entities"],
        "materialize_day_merchants": day["written"][MERCHANT_VIEW]["entities"],
        "materialize_day_customer_rows": day["written"][CUSTOMER_VIEW]["rows"],
        "materialize_day_merchant_rows": day["written"][MERCHANT_VIEW]["rows"],
        "online_1_p50_ms": round(on["service_1"]["p50_ms"], 3),
        "online_1_p99_ms": round(on["service_1"]["p99_ms"], 3),
        "online_1_mean_ms": round(on["service_1"]["mean_ms"], 3),
        "online_1_views_only_p50_ms": round(on["views_1"]["p50_ms"], 3),
        "online_1_views_only_p99_ms": round(on["views_1"]["p99_ms"], 3),
        "online_1_views_only_mean_ms": round(on["views_1"]["mean_ms"], 3),
        "online_100_p50_ms": round(on["service_batch"]["p50_ms"], 3),
        "online_100_p99_ms": round(on["service_batch"]["p99_ms"], 3),
        "online_100_views_only_p50_ms": round(on["views_batch"]["p50_ms"], 3),
        "online_100_views_only_p99_ms": round(on["views_batch"]["p99_ms"], 3),
        "online_calls": on["service_1"]["calls"],
        "online_batch_calls": on["service_batch"]["calls"],
        "online_batch_size": args.batch_size,
        "skew_entities": sk["entities"],
        "skew_mismatches": sk["mismatches"],
        "process_peak_rss_mb": round(max(peaks), 1),
        **new_days,
        "targets": targets,
        "targets_met": all(targets.values()),
    }


def main() -> None:
    """Parse the flags, run the benchmark and print the tables and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="50k rows/day, 100k historical rows, 300 calls"
    )
    parser.add_argument("--rows-per-day", type=int, help="default 1_000_000 (quick: 50_000)")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--historical-rows", type=int, help="default 1_000_000 (quick: 100_000)")
    parser.add_argument("--online-calls", type=int, help="1-entity calls; default 2000 (quick 300)")
    parser.add_argument("--batch-calls", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--skew-sample", type=int, default=100)
    parser.add_argument(
        "--big-day-rows",
        type=int,
        help="payments of the big day (incremental path only); 0 skips it. Default 10_000_000 "
        "(quick: 500_000)",
    )
    parser.add_argument(
        "--new-day-only",
        action="store_true",
        help="only step 1b: a new day of customer features both ways, and the big day",
    )
    parser.add_argument(
        "--duckdb-memory-limit",
        default="12GB",
        help="memory_limit of the offline store's DuckDB ('' keeps DuckDB's 80%% of RAM)",
    )
    parser.add_argument(
        "--duckdb-max-spill",
        default="40GB",
        help="max_temp_directory_size: DuckDB's spill files, kept in the bench's temporary folder",
    )
    args = parser.parse_args()
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.days <= MATURITY_DAYS:
        parser.error(f"--days must exceed the label maturity of {MATURITY_DAYS} days")
    measured = measure(args)
    print(json.dumps(report(args, measured)))


if __name__ == "__main__":
    main()
