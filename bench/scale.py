"""Benchmark of scaling out: Dask, Redis and PostgreSQL next to the one-machine defaults.

Each engine the platform scales out to is put side by side with the default it replaces, on
the same data in the same run:

* **Training** (``platform_assets.model.recipe.train``, what ``candidate_model`` calls): one
  training set, built as ``bench/training.py`` builds it (simulated payments, the project's
  feature engineering, the point-in-time join of ``fraud_model_v2``; ``--rows``, 600k by
  default), trained three ways with the same ``Hyperparameters``: in process (``cluster=None``,
  LightGBM's 2 threads), on a Dask ``LocalCluster`` of 1 worker process with 2 threads, and on
  one of 2 worker processes with 1 thread each (``tests/support/engines.dask_cluster``).
  Reported: the ``train`` call's wall time and its ``boosting_seconds`` (median of
  ``--train-repeats`` runs, 2 by default, back to back), the round early stopping picked,
  holdout PR-AUC (average precision) and ROC AUC (sklearn) on the rows after the split's
  holdout start, and each model's PR-AUC minus the local one's (of the last run). The Dask
  path does more rounds of work: ``lightgbm.dask`` has no early stopping inside the fit, so its
  first fit boosts ``max_rounds`` rounds and the round is picked afterwards (the local fit stops
  ``early_stopping_rounds`` after it); both then refit that many rounds on training +
  validation rows. "rounds boosted" counts both fits (for the local path, derived from the
  round picked), and boosting seconds per round boosted compare the work itself.
  ``--max-rounds`` changes ``max_rounds`` for all three (default: the recipe's).
* **Feature throughput**: the customer rows of one day (``--day-rows`` payments, 1M by
  default) from its lake as the daily run reads it (``new_day.big_day``'s preparation: the
  edge days' payments and 30 days of ``customer_daily_activity``, lazy scans of parquet files,
  so Dask workers read the files themselves): in process with
  ``engineering.customer_features_incremental``, then ``sharding.customer_features_sharded`` on
  the same two clusters, in ``--shards-per-worker`` (2) shards a worker. One untimed warm-up,
  then ``--feature-repeats`` timed calls each, median; payments of the day per second. The
  Dask rows are checked against the local ones: height, customer ids in order, and every value
  (``new_day.max_relative_difference``: floats within a relative difference, None if any other
  value differs).
* **Online retrieval**: Feast's ``get_online_features`` for one entity per call, on the SQLite
  online store (``feature_store.yaml``, file registry) and on Redis (``feature_store.prod.yaml``:
  SQL registry in a new PostgreSQL database, Redis online store), both applied from
  ``feature_repo/`` through ``FeatureStoreResource`` and materialized up to the end of the
  training lake's last day (``FeatureStoreResource.materialize``, the ``online_features``
  asset's call; the same feature rows go to both, its seconds are printed). Random payments of
  the last day, ``--online-calls`` (2000) calls of the full ``fraud_model_v2`` service (with the
  on-demand view and its request fields) and as many of only its two stored views' features,
  after 100 warm-up calls each; the same requests on both stores, which take turns by blocks
  of 100 requests, so the machine's load falls on both, and their answers are compared
  request by request. Not call by call: Feast keeps one feature-resolution cache per process
  and clears it whenever a call's registry differs from the previous call's, which made both
  stores about 5x slower here (a serving process has one store and never pays it). The
  on-demand view (pandas, in process) costs the same on both. Redis runs in database
  ``REDIS_DB`` of the test server, emptied before and after (not ``flush_redis``'s FLUSHALL: a
  concurrent integration tier keeps its rows in database 0).
* **Prediction-log writes**: ``PredictionLog.append`` on ``sqlite:///<tmp>/predictions.db`` (the
  embedded default) and on a new PostgreSQL database, with the same frames (``LOG_COLUMNS``
  plus one float column per model feature): ``--log-batches`` batches of ``--log-batch-rows``
  (100k, the batch scorer's case) and ``--log-small-batches`` batches of ``--log-small-rows``
  (200, the online writer's: half a second of traffic at 400 requests a second), the two
  engines alternately. Rows per second over all batches, and the small batches' p50/p99. The
  test PostgreSQL of ``.ci/services`` runs with ``fsync=off`` and ``synchronous_commit=off``:
  its figures are a ceiling for a durable server; SQLite commits with its defaults (WAL).

PostgreSQL and Redis come from ``FLYWHEEL_TEST_POSTGRES_URL`` and ``FLYWHEEL_TEST_REDIS_URL``
(``eval "$(.ci/services)"``); when they are missing or do not answer, the reason is printed and
the online and prediction-log sections are skipped (null in the JSON). Dask needs no service.
LightGBM's OpenMP threads spin at most ``GOMP_SPINCOUNT`` = 10000 times, as under ``make bench``
(set here when unset, before LightGBM loads; workers inherit it). The 1-minute load average as
each training and each feature measurement starts is printed: on a shared machine LightGBM's
and polars' threads wait for cores others are using, and the figures move with it.

Run from the project root: ``eval "$(.ci/services)"; .venv/bin/python bench/scale.py`` (five to
seven minutes on two cores, 1.5 GB of memory at most in the bench's process) or ``--quick`` (100k
training rows, a 200k-payment day, fewer calls and batches; under two minutes) for a smoke run.
On one machine, Dask's workers share the cores the local path has to itself: these are the
costs of the distributed paths, not what more machines would gain. Tables go to stdout,
progress to stderr; the last line of stdout is one JSON object with every figure.
"""

import argparse
import contextlib
import datetime
import importlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from helpers.datasets import build_training_set, online_requests
from helpers.new_day import max_relative_difference
from helpers.output import feast_output, progress, rounded
from helpers.scale_data import day_lake, log_rows
from helpers.tables import print_table
from helpers.timing import percentiles

from platform_assets.features import engineering as fe
from platform_assets.features.labelling import LABEL
from platform_assets.features.sharding import customer_features_sharded
from platform_assets.model.recipe import (
    Hyperparameters,
    fraud_scores,
    holdout,
    model_features,
    time_split,
    train,
)
from resources.environments import PROJECT_ROOT
from resources.feature_store import FeatureStoreResource
from resources.prediction_log import ONLINE, PredictionLog

sys.path.insert(0, str(PROJECT_ROOT / "tests"))
from support.engines import (  # noqa: E402 (the tests' engines)  # pyright: ignore[reportMissingImports]
    POSTGRES_VARIABLE,
    dask_cluster,
    new_database,
    redis_address,
    unavailable,
)

if TYPE_CHECKING:
    from distributed import Client

SEED = 7
FIRST_DAY = datetime.date(2026, 3, 1)
FEATURE_DAY = datetime.date(2026, 4, 15)
WARMUP_CALLS = 100
BLOCK = 100
REDIS_DB = 3
CONNECTS = 20
CUSTOMER_VIEW, MERCHANT_VIEW = "customer_behaviour", "merchant_risk"
# Each engine: its JSON key, its label, its Dask workers (0: in process) and threads a worker.
ENGINES = (
    ("local", "local (in process, 2 threads)", 0, 0),
    ("dask_1x2", "Dask, 1 worker x 2 threads", 1, 2),
    ("dask_2x1", "Dask, 2 workers x 1 thread", 2, 1),
)
FULL = {
    "rows": 600_000,
    "rows_per_day": 120_000,
    "days": 14,
    "day_rows": 1_000_000,
    "train_repeats": 2,
    "feature_repeats": 3,
    "online_calls": 2_000,
    "log_batches": 5,
    "log_small_batches": 300,
}
QUICK = {
    "rows": 100_000,
    "rows_per_day": 20_000,
    "days": 14,
    "day_rows": 200_000,
    "train_repeats": 1,
    "feature_repeats": 2,
    "online_calls": 300,
    "log_batches": 2,
    "log_small_batches": 100,
}


# Engines -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def engine(workers: int, threads: int) -> "Iterator[Client | None]":
    """None for the local path; else a client of a new ``LocalCluster``, its workers warmed.

    One worker with two threads is started here (``dask_cluster`` starts single-threaded
    workers); the workers import LightGBM and the feature code before anything is timed.
    """
    if not workers:
        yield None
        return
    from distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        if threads == 1:
            address = stack.enter_context(dask_cluster(workers))
        else:
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=threads,
                processes=True,
                dashboard_address=None,  # pyright: ignore[reportArgumentType]
            )
            stack.enter_context(cluster)
            address = cluster.scheduler_address
        client = stack.enter_context(Client(address))
        # LightGBM's native log lines of the workers to stderr: stdout is the report.
        client.run(os.dup2, 2, 1)
        for module in ("lightgbm", "lightgbm.dask", "platform_assets.features.engineering"):
            client.run(importlib.import_module, module)
        yield client


CREATED: list[str] = []


def database(purpose: str) -> str:
    """A new database on the test server (``new_database``), dropped when the bench ends."""
    url = new_database(purpose)
    CREATED.append(url.rsplit("/", 1)[1])
    return url


def drop_databases() -> None:
    """Drop the databases this run created, closing what still holds them."""
    import psycopg
    from psycopg import sql

    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
    with psycopg.connect(os.environ[POSTGRES_VARIABLE], autocommit=True) as connection:
        for name in CREATED:
            connection.execute(drop.format(sql.Identifier(name)))
    CREATED.clear()


# 1. Training ------------------------------------------------------------------------------------


def train_once(
    client: "Client | None",
    config: Hyperparameters,
    frame: pl.DataFrame,
    features: list[str],
) -> dict[str, Any]:
    """One ``recipe.train`` on ``client`` (None: in process), scored on the holdout."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    split = time_split(frame, config.validation_fraction, config.holdout_fraction)
    unseen = holdout(frame, split.holdout_start)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # lightgbm.dask prints its ports
        model = train(config, split, features, client)
    wall = time.perf_counter() - started
    labels, scores = unseen[LABEL].to_numpy(), fraud_scores(model.booster, unseen)
    best = model.best_iteration
    first_fit = (
        min(best + config.early_stopping_rounds, config.max_rounds)
        if client is None
        else config.max_rounds
    )
    return {
        "wall_s": wall,
        "boosting_s": model.boosting_seconds,
        "best_iteration": best,
        "rounds_boosted": first_fit + (best if config.refit else 0),
        "ms_per_round": model.boosting_seconds / (first_fit + (best if config.refit else 0)) * 1000,
        "pr_auc": float(average_precision_score(labels, scores)),
        "roc_auc": float(roc_auc_score(labels, scores)),
        "load": load,
        "train_rows": split.train.height,
        "validation_rows": split.validation.height,
        "holdout_rows": unseen.height,
        "holdout_frauds": int(unseen[LABEL].sum()),
    }


def train_runs(
    client: "Client | None",
    config: Hyperparameters,
    frame: pl.DataFrame,
    features: list[str],
    repeats: int,
) -> dict[str, Any]:
    """``repeats`` trainings: the last one's figures, with the median of the times."""
    runs = []
    for _ in range(repeats):
        runs.append(train_once(client, config, frame, features))
        progress(f"  {runs[-1]['wall_s']:.1f} s (load {runs[-1]['load']:.1f})", end=False)
    times = ("wall_s", "boosting_s", "ms_per_round")
    return {
        **runs[-1],
        **{name: statistics.median(run[name] for run in runs) for name in times},
        "runs": [{k: run[k] for k in (*times, "best_iteration", "pr_auc", "load")} for run in runs],
    }


# 2. Feature throughput ---------------------------------------------------------------------------


def features_once(
    client: "Client | None", shards: int, day: dict[str, Any], repeats: int
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The day's customer rows, 1 warm-up then ``repeats`` timed calls; the last call's rows."""

    def call() -> pl.DataFrame:
        if client is None:
            return fe.customer_features_incremental(
                day["transactions"], day["activity"], FEATURE_DAY
            )
        return customer_features_sharded(
            client, day["transactions"], day["activity"], FEATURE_DAY, shards
        )

    rows = call()
    load = os.getloadavg()[0]
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        rows = call()
        seconds.append(time.perf_counter() - started)
    median = statistics.median(seconds)
    return rows, {
        "load": load,
        "seconds": median,
        "runs_s": seconds,
        "payments_per_s": day["payments"] / median,
        "rows": rows.height,
        "shards": shards if client is not None else None,
    }


def compare_rows(local: pl.DataFrame, rows: pl.DataFrame) -> dict[str, Any]:
    """Whether ``rows`` are the local rows: height, customer ids in order, every value."""
    return {
        "height_equal": rows.height == local.height,
        "customers_equal": rows.height == local.height
        and rows["customer_id"].equals(local["customer_id"]),
        "max_relative_difference": max_relative_difference(local, rows),
    }


# 3. Online retrieval -----------------------------------------------------------------------------


def redis_client() -> Any:
    """The test Redis, in the bench's own database."""
    import redis

    host, port = redis_address().split(",")[0].rsplit(":", 1)
    return redis.Redis(host=host, port=int(port), db=REDIS_DB)


def online(
    sqlite_store: FeatureStoreResource, lake: Path, days: list[datetime.date], calls: int
) -> dict[str, Any]:
    """Both online stores loaded with the same rows, then the same calls on each, in turns."""
    redis_client().flushdb()
    os.environ["FLYWHEEL_FEAST_REGISTRY_URL"] = database("feast")
    os.environ["FLYWHEEL_REDIS_CONNECTION"] = f"{redis_address()},db={REDIS_DB}"
    redis_store = FeatureStoreResource(config_file="feature_store.prod.yaml", lake_root=str(lake))
    progress("feast apply (SQL registry on PostgreSQL, Redis online store)")
    with feast_output():
        redis_store.apply()
    end = fe.day_start(days[-1]) + datetime.timedelta(days=1)
    out: dict[str, Any] = {"materialize_s": {}, "calls": calls}
    stores = {"sqlite": sqlite_store, "redis": redis_store}
    for name, feature_store in stores.items():
        progress(f"materialize into {name} up to {end.isoformat()}")
        started = time.perf_counter()
        with feast_output():
            feature_store.materialize(end)
        out["materialize_s"][name] = time.perf_counter() - started
    out["customers"], out["merchants"] = entities_in_window(lake, end)

    requests = online_requests(lake, days[-1], calls)
    service = sqlite_store.service()
    views = [
        f"{projection.name}:{feature.name}"
        for projection in service.feature_view_projections
        if projection.name in (CUSTOMER_VIEW, MERCHANT_VIEW)
        for feature in projection.features
    ]
    keys_only = [{k: r[k] for k in ("customer_id", "merchant_id")} for r in requests]
    out["features_service"] = len(sqlite_store.feature_names())
    out["features_views"] = len(views)
    for kind, refs, rows in (("service", None, requests), ("views", views, keys_only)):
        progress(f"online: {calls} calls x 1 entity on each store, {kind}")
        figures, differing = in_blocks(
            {name: fs.store() for name, fs in stores.items()}, refs, rows
        )
        out[kind] = figures
        out[f"{kind}_differing_answers"] = differing
    redis_client().flushdb()
    return out


def entities_in_window(lake: Path, end: datetime.datetime) -> tuple[int, int]:
    """Customers and merchants with a feature row in their view's TTL before ``end``."""
    counts = []
    for dataset, key, ttl in (
        ("customer_features", "customer_id", 30),
        ("merchant_features", "merchant_id", 7),
    ):
        rows = pl.scan_parquet(lake / dataset / "*.parquet").filter(
            pl.col(fe.TIMESTAMP).is_between(end - datetime.timedelta(days=ttl), end)
        )
        counts.append(rows.select(pl.col(key).n_unique()).collect().item())
    return counts[0], counts[1]


def in_blocks(
    stores: dict[str, Any], refs: list[str] | None, rows: list[dict[str, Any]]
) -> tuple[dict[str, dict[str, float]], int]:
    """Per store, ms of one ``get_online_features`` per row; rows whose answers differ.

    The stores take turns by blocks of ``BLOCK`` rows, each block after one untimed call:
    Feast keeps one resolution cache per process, cleared whenever the registry of the call
    differs from the last call's, so alternating call by call would time that cache's refill
    (5x the latency here), which a serving process with one store never pays.
    """
    names = list(stores)
    features = {
        name: refs if refs is not None else store.get_feature_service("fraud_model_v2")
        for name, store in stores.items()
    }

    def call(name: str, row: dict[str, Any]) -> dict[str, Any]:
        return (
            stores[name].get_online_features(features=features[name], entity_rows=[row]).to_dict()
        )

    for row in rows[:WARMUP_CALLS]:
        for name in names:
            call(name, row)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    answers: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for block, first in enumerate(range(0, len(rows), BLOCK)):
        shift = block % len(names)
        for name in names[shift:] + names[:shift]:
            call(name, rows[first])
            for row in rows[first : first + BLOCK]:
                started = time.perf_counter()
                answers[name].append(call(name, row))
                seconds[name].append(time.perf_counter() - started)
    differing = sum(a != b for a, b in zip(*answers.values(), strict=True))
    figures = {
        name: {**percentiles(s), "mean_ms": float(np.mean(s)) * 1000} for name, s in seconds.items()
    }
    return figures, differing


# 4. Prediction-log writes ------------------------------------------------------------------------


def prediction_log(root: Path, features: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """``PredictionLog.append`` of the same frames on SQLite and PostgreSQL, alternately."""
    logs = {
        "sqlite": PredictionLog(url=f"sqlite:///{root / 'predictions.db'}"),
        "postgresql": PredictionLog(url=database("predictions")),
    }
    batches = [
        log_rows(args.log_batch_rows, features, SEED + n, offset=n * args.log_batch_rows)
        for n in range(args.log_batches)
    ]
    first_small = args.log_batches * args.log_batch_rows
    small = [
        log_rows(
            args.log_small_rows, features, SEED + 1000 + n, first_small + n * args.log_small_rows
        ).with_columns(source=pl.lit(ONLINE), latency_ms=pl.lit(2.5))
        for n in range(args.log_small_batches)
    ]
    out: dict[str, Any] = {"features": len(features)}
    for kind, frames in (("batch", batches), ("small", small)):
        progress(f"prediction log: {len(frames)} appends of {frames[0].height:,} rows on each")
        seconds: dict[str, list[float]] = {name: [] for name in logs}
        names = list(logs)
        for index, frame in enumerate(frames):
            for name in names[index % 2 :] + names[: index % 2]:
                started = time.perf_counter()
                logs[name].append(frame)
                seconds[name].append(time.perf_counter() - started)
        rows = sum(frame.height for frame in frames)
        out[kind] = {
            name: {"rows_per_s": rows / sum(s), **percentiles(s)} for name, s in seconds.items()
        }
        out[f"{kind}_rows"] = frames[0].height
        out[f"{kind}_batches"] = len(frames)
    out["rows_in_log"] = {
        name: log.read("2026-03-01", ("batch", ONLINE)).height for name, log in logs.items()
    }
    # What every append pays around its writes: SQLite opens a connection per call; PostgreSQL's
    # is held by the resource (opened once per process: about 40 ms through ADBC).
    out["connect_ms"] = {}
    for name, log in logs.items():
        opened = []
        for _ in range(CONNECTS):
            started = time.perf_counter()
            with log._connection():
                pass
            opened.append(time.perf_counter() - started)
        out["connect_ms"][name] = statistics.median(opened) * 1000
    return out


# Orchestration -----------------------------------------------------------------------------------


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Build the data once, then every engine on it."""
    out: dict[str, Any] = {"unavailable": unavailable(), "training": {}, "features": {}}
    config = Hyperparameters(**({"max_rounds": args.max_rounds} if args.max_rounds else {}))
    out["config"] = config.model_dump()
    with tempfile.TemporaryDirectory(prefix="bench-scale-", dir="/tmp") as tmp:
        root = Path(tmp)
        frame, feature_store, lake, days = build_training_set(
            root, FIRST_DAY, args.rows_per_day, args.days, args.rows
        )
        features = model_features(config, feature_store.feature_names())
        out["training_rows"], out["training_frauds"] = frame.height, int(frame[LABEL].sum())
        progress(f"a day of {args.day_rows:,} payments and the month of activity before it")
        day = day_lake(root, args.day_rows, FEATURE_DAY, SEED)
        out["day"] = {"payments": day["payments"], "prepare_s": day["prepare_s"]}
        local_rows = None
        for key, label, workers, threads in ENGINES:
            with engine(workers, threads) as client:
                progress(f"training: {frame.height:,} rows, {label}, {args.train_repeats} times")
                out["training"][key] = train_runs(
                    client, config, frame, features, args.train_repeats
                )
                shards = args.shards_per_worker * workers
                progress(f"features: {day['payments']:,} payments, {label}")
                rows, figures = features_once(client, shards, day, args.feature_repeats)
                if local_rows is None:
                    local_rows = rows
                figures.update(compare_rows(local_rows, rows))
                out["features"][key] = figures
        del local_rows
        out["online"] = out["prediction_log"] = None
        if out["unavailable"]:
            progress(f"skipping online retrieval and prediction-log writes: {out['unavailable']}")
            return out
        try:
            out["online"] = online(feature_store, lake, days, args.online_calls)
            out["prediction_log"] = prediction_log(root, features, args)
        finally:
            drop_databases()
    return out


# Report ------------------------------------------------------------------------------------------


def report(args: argparse.Namespace, m: dict[str, Any]) -> dict[str, Any]:
    """Print the tables; return the figures of the JSON line."""
    training, features = m["training"], m["features"]
    local = training["local"]
    config = m["config"]
    print_table(
        f"1. Training, recipe.train on the same {m['training_rows']:,} rows "
        f"({local['train_rows']:,} train, {local['validation_rows']:,} validation, "
        f"{local['holdout_rows']:,} holdout with {local['holdout_frauds']:,} frauds); "
        f"max_rounds {config['max_rounds']}, early stopping {config['early_stopping_rounds']}; "
        f"times: median of {args.train_repeats} runs, quality: the last run",
        ["engine", "wall s", "boosting s", "round picked", "rounds boosted", "boosting ms/round",
         "holdout PR-AUC", "PR-AUC - local", "holdout ROC AUC", "loads at start"],
        [[label, t["wall_s"], t["boosting_s"], t["best_iteration"], t["rounds_boosted"],
          t["ms_per_round"], t["pr_auc"], t["pr_auc"] - local["pr_auc"], t["roc_auc"],
          ", ".join(f"{run['load']:.1f}" for run in t["runs"])]
         for key, label, _, _ in ENGINES for t in [training[key]]],
    )  # fmt: skip
    print(
        "every run's wall s: "
        + "; ".join(
            f"{label} " + ", ".join(f"{run['wall_s']:.1f}" for run in training[key]["runs"])
            for key, label, _, _ in ENGINES
        )
    )
    print(
        "rounds boosted: first fit + refit; the Dask path boosts max_rounds before picking the "
        "round (no early stopping inside lightgbm.dask), the local one stops "
        f"{config['early_stopping_rounds']} rounds after it"
    )
    day = m["day"]
    print_table(
        f"2. Feature throughput: customer rows of one day of {day['payments']:,} payments "
        f"({FEATURE_DAY}), median of {args.feature_repeats} after a warm-up",
        ["engine", "shards", "seconds", "payments/s", "x local", "rows out", "rows equal local",
         "customers equal", "max relative difference", "load at start"],
        [[label, f["shards"] or "-", f["seconds"], f["payments_per_s"],
          features["local"]["seconds"] / f["seconds"], f["rows"], f["height_equal"],
          f["customers_equal"], repr(f["max_relative_difference"]), f["load"]]
         for key, label, _, _ in ENGINES for f in [features[key]]],
    )  # fmt: skip
    on, log = m["online"], m["prediction_log"]
    if on is None:
        print(f"\n3. Online retrieval and 4. prediction-log writes SKIPPED: {m['unavailable']}")
    else:
        print_table(
            f"3. Online retrieval, Feast get_online_features, 1 entity a call, {on['calls']:,} "
            f"calls per store and request after {WARMUP_CALLS} warm-ups, stores taking turns by "
            f"blocks of {BLOCK}",
            ["request", "features", "SQLite p50 ms", "SQLite p99 ms", "Redis p50 ms",
             "Redis p99 ms", "answers differing"],
            [[label, on[f"features_{kind}"], on[kind]["sqlite"]["p50_ms"],
              on[kind]["sqlite"]["p99_ms"], on[kind]["redis"]["p50_ms"],
              on[kind]["redis"]["p99_ms"], on[f"{kind}_differing_answers"]]
             for kind, label in (("service", "fraud_model_v2 (views + on-demand)"),
                                 ("views", "the two stored views only"))],
        )  # fmt: skip
        print(
            f"materialized {on['customers']:,} customers and {on['merchants']:,} merchants: "
            f"SQLite {on['materialize_s']['sqlite']:.1f} s, "
            f"Redis {on['materialize_s']['redis']:.1f} s"
        )
        print_table(
            "4. Prediction-log writes, PredictionLog.append of the same frames "
            f"({log['features']} feature columns), engines alternating",
            ["batches", "SQLite rows/s", "PostgreSQL rows/s", "SQLite p50 ms", "SQLite p99 ms",
             "PostgreSQL p50 ms", "PostgreSQL p99 ms"],
            [[f"{log[f'{kind}_batches']} x {log[f'{kind}_rows']:,} rows",
              log[kind]["sqlite"]["rows_per_s"], log[kind]["postgresql"]["rows_per_s"],
              log[kind]["sqlite"]["p50_ms"], log[kind]["sqlite"]["p99_ms"],
              log[kind]["postgresql"]["p50_ms"], log[kind]["postgresql"]["p99_ms"]]
             for kind in ("batch", "small")],
        )  # fmt: skip
        connect = log["connect_ms"]
        print(
            f"Around its writes an append opens and closes a SQLite connection "
            f"({connect['sqlite']:.1f} ms) or takes PostgreSQL's held one and ends its transaction "
            f"({connect['postgresql']:.1f} ms; median of {CONNECTS}). "
            f"PostgreSQL at {POSTGRES_VARIABLE}: .ci/services runs it with fsync=off and "
            "synchronous_commit=off (a ceiling for a durable server)"
        )
    return rounded(
        {
            "bench": "scale",
            "quick": args.quick,
            "engines_unavailable": m["unavailable"],
            "training": {
                "rows": m["training_rows"],
                "frauds": m["training_frauds"],
                "max_rounds": config["max_rounds"],
                "early_stopping_rounds": config["early_stopping_rounds"],
                **{
                    key: {
                        **training[key],
                        "pr_auc_minus_local": training[key]["pr_auc"] - local["pr_auc"],
                    }
                    for key, _, _, _ in ENGINES
                },
            },
            "features": {"day_payments": day["payments"], **features},
            "online": on,
            "prediction_log": log,
        }
    )


def main() -> None:
    """Parse the flags, measure, print the tables and the JSON line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller everything (a smoke run)")
    parser.add_argument("--rows", type=int, help="training rows; default 600_000 (quick 100_000)")
    parser.add_argument("--rows-per-day", type=int, help="training lake's payments a day")
    parser.add_argument("--days", type=int, help="training lake's days (default 14)")
    parser.add_argument("--max-rounds", type=int, help="default: the recipe's (1000)")
    parser.add_argument("--train-repeats", type=int, help="trainings each; default 2 (quick 1)")
    parser.add_argument("--day-rows", type=int, help="the day's payments; default 1M (quick 200k)")
    parser.add_argument("--shards-per-worker", type=int, default=2)
    parser.add_argument("--feature-repeats", type=int, help="timed calls; default 3 (quick 2)")
    parser.add_argument("--online-calls", type=int, help="per store; default 2000 (quick 300)")
    parser.add_argument("--log-batch-rows", type=int, default=100_000)
    parser.add_argument("--log-batches", type=int, help="default 5 (quick 2)")
    parser.add_argument("--log-small-rows", type=int, default=200)
    parser.add_argument("--log-small-batches", type=int, help="default 300 (quick 100)")
    args = parser.parse_args()
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")
    print(json.dumps(report(args, measure(args))))


if __name__ == "__main__":
    main()
