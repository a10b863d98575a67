"""Benchmark of online scoring: Flywheel's prediction service against MLflow's, same model.

* **Platform** (untimed): the local platform the tests build (``tests/support/harness.py``):
  14 simulated days of ``--rows-per-day`` payments ingested, features computed, the Feast
  registry applied and the online store loaded, a model trained, gated and promoted (v1).
* **Traffic**: the simulator's payments of the day after the loaded features (the next live
  day), as ``serving.model.replayer`` sends them, paced open-loop at 50, 100 and 200 requests a
  second by 4 client threads with keep-alive connections (``--seconds`` per rate, after 200
  warm-up requests).
* **Flywheel**: ``python -m serving.model.app`` in its own process; one ``POST /predict`` per
  payment (online features, on-demand features, score, decision, prediction-log write queued).
* **Peer**: ``mlflow models serve`` of the same registered version in its own process (MLflow's
  scoring server, ``--env-manager local``), chained after Feast's own online retrieval for the
  same entities (``FeatureStore.get_online_features`` of the same feature service, on the client,
  as an application without a feature-aware server would do it), then ``POST /invocations``.
* Both run on this machine's 2 cores with the load generator. Targets: Flywheel p50 <= 3 ms and
  p99 <= 10 ms at 100 rps, and a p50 at least 3x lower than the peer's.

Tables on stdout, progress on stderr; the last line of stdout is one JSON object.
"""

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from dagster import AssetSelection, DagsterInstance
from helpers.output import feast_output, progress
from helpers.tables import print_table

from resources.environments import DATA_DIR_VARIABLE, PROJECT_ROOT
from serving.model.replayer import ReplayStats, paced, payloads, simulated_payments

sys.path.insert(0, str(PROJECT_ROOT / "tests"))
from support.harness import LocalPlatform, days  # noqa: E402 (the tests' local platform)

RATES = (50, 100, 200)
NOW = datetime.datetime(2026, 1, 15, 6, tzinfo=datetime.UTC)
LIVE_DAY = "2026-01-15"
WARM_UP = 200
LOW_FLOORS = {"pr_auc": 0.01, "roc_auc": 0.6}
TARGET_P50_MS, TARGET_P99_MS, TARGET_RATIO = 3.0, 10.0, 3.0


def build_platform(root: Path, rows_per_day: int) -> LocalPlatform:
    """The local platform with a champion and a loaded online store."""
    (root / "home").mkdir()
    platform = LocalPlatform(
        DagsterInstance.local_temp(str(root / "home")),
        root / "data",
        rows_per_day=rows_per_day,
        now=NOW.isoformat(),
        label_delay_days=3,
    )
    progress(f"building the platform: 14 days of {rows_per_day:,} payments")
    with feast_output():
        platform.ingest_with_features(days("2026-01-01", 14))
        for asset in ("feature_store_registry", "online_features"):
            assert platform.materialize(AssetSelection.assets(asset)).success, asset
        config = {"ops": {"training_set": {"config": {"days": 10}}}}
        assert platform.materialize(AssetSelection.assets("training_set"), run_config=config)
        release = ("candidate_model", "evaluation_report", "canary_release", "canary_analysis")
        # Serving speed does not depend on the model's quality: low floors let a small run pass.
        floors = {"ops": {"evaluation_report": {"config": {"floors": LOW_FLOORS}}}}
        chain = AssetSelection.assets(*release, "production_model")
        assert platform.materialize(chain, run_config=floors).success
    return platform


@contextmanager
def process(name: str, command: list[str], env: dict[str, str], ready: str) -> Iterator[None]:
    """A server in its own process group, up once ``ready`` answers 200; killed afterwards."""
    log = open(Path(tempfile.gettempdir()) / f"bench-serving-{name}.log", "w")  # noqa: SIM115
    server = subprocess.Popen(
        command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, f"{name} exited; see {log.name}"
            assert time.monotonic() < deadline, f"{name} not ready in 120 s; see {log.name}"
            try:
                if httpx.get(ready, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        yield
    finally:
        with suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        log.close()


def measure(name: str, call: Callable, url: str, seconds: int) -> dict[int, ReplayStats]:
    """The call paced at each rate for ``seconds``, after a warm-up."""
    paced(call, WARM_UP, 100, url)
    results = {}
    for rate in RATES:
        progress(f"{name} at {rate} rps")
        results[rate] = paced(call, rate * seconds, rate, url)
    return results


def figures(stats: ReplayStats) -> dict[str, Any]:
    """p50, p99 (ms), achieved rate and failed calls of one paced run."""
    ms = np.asarray(stats.latencies_ms)
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "achieved_rps": round(stats.achieved_rps, 1),
        "errors": sum(n for status, n in stats.statuses.items() if status != 200),
    }


def main() -> None:
    """Build the platform, serve the champion both ways, pace the same payments at each."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3,000 payments a day, 5 s a rate")
    parser.add_argument("--rows-per-day", type=int, help="default 10_000 (quick: 3_000)")
    parser.add_argument("--seconds", type=int, help="per rate; default 20 (quick: 5)")
    args = parser.parse_args()
    args.rows_per_day = args.rows_per_day or (3_000 if args.quick else 10_000)
    args.seconds = args.seconds or (5 if args.quick else 20)
    with tempfile.TemporaryDirectory(prefix="bench-serving-", dir="/tmp") as tmp:
        platform = build_platform(Path(tmp), args.rows_per_day)
        data = platform.data_dir
        bodies = payloads(simulated_payments(platform.resources()["source"], [LIVE_DAY]))
        feature_store = platform.resources()["feature_store"]
        store, service = feature_store.store(), feature_store.service()
        features = platform.registry.load_booster("1").feature_name()
        ours_port, peer_port = 8811, 8812
        python = str(Path(sys.executable))
        with process(
            "flywheel",
            [python, "-m", "serving.model.app", "--port", str(ours_port)],
            {DATA_DIR_VARIABLE: str(data)},
            f"http://127.0.0.1:{ours_port}/healthz",
        ):
            ours = measure(
                "flywheel",
                lambda http, i: http.post("/predict", json=bodies[i % len(bodies)]).status_code,
                f"http://127.0.0.1:{ours_port}",
                args.seconds,
            )
            # The same client and server answering without scoring: HTTP's share of the p50.
            floor = paced(
                lambda http, i: http.get("/healthz").status_code,
                100 * args.seconds,
                100,
                f"http://127.0.0.1:{ours_port}",
            )

        def peer_call(http: httpx.Client, i: int) -> int:
            body = bodies[i % len(bodies)]
            at = datetime.datetime.fromisoformat(body["timestamp"])
            row = {k: body[k] for k in ("customer_id", "merchant_id", "amount", "country")}
            row["transaction_epoch_s"] = int(at.timestamp())
            online = store.get_online_features(features=service, entity_rows=[row]).to_dict()
            values = [[online[name][0] for name in features]]
            frame = {"dataframe_split": {"columns": features, "data": values}}
            return http.post("/invocations", json=frame).status_code

        with process(
            "mlflow",
            [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m",
             "models:/fraud_model/1", "--env-manager", "local", "-p", str(peer_port)],
            # MLflow starts its server as `uvicorn` from PATH: the project's environment's.
            {
                "MLFLOW_TRACKING_URI": platform.registry.tracking_uri,
                "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            },
            f"http://127.0.0.1:{peer_port}/ping",
        ):  # fmt: skip
            peer = measure("mlflow", peer_call, f"http://127.0.0.1:{peer_port}", args.seconds)
    report(ours, peer, floor)


def report(ours: dict[int, ReplayStats], peer: dict[int, ReplayStats], floor: ReplayStats) -> None:
    """The side-by-side table and the JSON line."""
    rows, result = [], {"flywheel": {}, "mlflow_chained": {}}
    result["http_floor_at_100"] = figures(floor)
    for rate in RATES:
        for name, side in (("flywheel", ours), ("mlflow_chained", peer)):
            f = figures(side[rate])
            result[name][str(rate)] = f
            rows.append([name, rate, f["achieved_rps"], f["p50_ms"], f["p99_ms"], f["errors"]])
    f = result["http_floor_at_100"]
    rows.append(["GET /healthz (no scoring)", 100, f["achieved_rps"], f["p50_ms"], f["p99_ms"], 0])
    print_table(
        "POST one payment (ms, client side)",
        ["system", "offered rps", "achieved rps", "p50", "p99", "errors"],
        rows,
    )
    at_100 = result["flywheel"]["100"], result["mlflow_chained"]["100"]
    ratio = at_100[1]["p50_ms"] / at_100[0]["p50_ms"]
    result["p50_ratio_at_100"] = round(ratio, 2)
    result["targets_met"] = (
        at_100[0]["p50_ms"] <= TARGET_P50_MS
        and at_100[0]["p99_ms"] <= TARGET_P99_MS
        and ratio >= TARGET_RATIO
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
