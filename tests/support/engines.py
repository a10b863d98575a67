"""The distributed engines of the integration tier and ``bench/scale.py``, on loopback.

PostgreSQL and Redis are started outside Python (``.ci/services``, or a team's own): their
addresses come from ``FLYWHEEL_TEST_POSTGRES_URL`` and ``FLYWHEEL_TEST_REDIS_URL``, and
``unavailable()`` says in one sentence why the tier cannot run when they are missing or do not
answer. An MLflow tracking server (PostgreSQL backend store, its own artifact destination) and a
Dask ``LocalCluster`` are started here, per module, as production would run them.
"""

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import requests

from support.servers import free_port, wait_for

POSTGRES_VARIABLE = "FLYWHEEL_TEST_POSTGRES_URL"
REDIS_VARIABLE = "FLYWHEEL_TEST_REDIS_URL"
HOW_TO_START = 'start them with `eval "$(.ci/services)"` (Debian\'s postgresql and redis-server)'


def unavailable() -> str | None:
    """Why the engines cannot be used here, or None when PostgreSQL and Redis both answer."""
    postgres, redis_address = os.environ.get(POSTGRES_VARIABLE), os.environ.get(REDIS_VARIABLE)
    if not postgres or not redis_address:
        return f"{POSTGRES_VARIABLE} and {REDIS_VARIABLE} are not set: {HOW_TO_START}"
    import psycopg
    import redis

    try:
        psycopg.connect(postgres, connect_timeout=5).close()
    except psycopg.Error as error:
        return f"PostgreSQL at {POSTGRES_VARIABLE} does not answer ({error}): {HOW_TO_START}"
    host, port = redis_address.split(",")[0].rsplit(":", 1)
    try:
        redis.Redis(host=host, port=int(port), socket_timeout=5).ping()
    except redis.RedisError as error:
        return f"Redis at {REDIS_VARIABLE} does not answer ({error}): {HOW_TO_START}"
    return None


def redis_address() -> str:
    """Redis as Feast's connection string wants it (host:port)."""
    return os.environ[REDIS_VARIABLE]


def flush_redis() -> None:
    """Empty the test Redis: each module starts with no online features."""
    import redis

    host, port = redis_address().split(",")[0].rsplit(":", 1)
    redis.Redis(host=host, port=int(port)).flushall()


def new_database(purpose: str) -> str:
    """A new, empty PostgreSQL database on the test server; its URL."""
    import psycopg

    name = f"flywheel_{purpose}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(os.environ[POSTGRES_VARIABLE], autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return os.environ[POSTGRES_VARIABLE].rsplit("/", 1)[0] + f"/{name}"


@contextlib.contextmanager
def mlflow_server(backend_store_url: str, artifacts: Path) -> Iterator[str]:
    """``mlflow server`` on a PostgreSQL backend store, serving artifacts from ``artifacts``."""
    port = free_port()
    log = artifacts.parent / "mlflow-server.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "mlflow", "server"),
                *("--backend-store-uri", backend_store_url),
                *("--artifacts-destination", str(artifacts)),
                *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            f"mlflow server (log: {log})",
            90,
            lambda: server.poll() is None and requests.get(f"{url}/health", timeout=2).ok,
        )
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@contextlib.contextmanager
def dask_cluster(workers: int) -> Iterator[str]:
    """A Dask ``LocalCluster`` of ``workers`` single-threaded worker processes; its address."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        yield cluster.scheduler_address
