"""Shared fixtures: a temporary Dagster instance and a local environment under ``tmp_path``.

The suite runs on two xdist workers, a file at a time (``-n 2 --dist loadfile`` in
pyproject.toml), so a module's fixtures are built once. Files are handed out in collection order:
the longest ones go first, so neither worker is left with one at the end while the other idles.
"""

import os
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, instance_for_test
from support.harness import LocalPlatform

TESTS = Path(__file__).parent
# LightGBM's OpenMP threads sleep after a short spin when the other worker needs the core (the
# Makefile's GOMP_SPINCOUNT, for a pytest run outside make), set before libgomp loads.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")
# Temporary files in memory when the machine has a tmpfs: every Dagster event, MLflow run and
# prediction is a SQLite commit, and on a disk each waits for its fsync (a third of the model
# tests' time on CI's machine). Set before pytest picks its base folder, and inherited by the
# `make dev` subprocesses the end-to-end tests start.
SHARED_MEMORY = Path("/dev/shm")
if "TMPDIR" not in os.environ and os.access(SHARED_MEMORY, os.W_OK):
    (SHARED_MEMORY / "flywheel-tests").mkdir(exist_ok=True)
    os.environ["TMPDIR"] = str(SHARED_MEMORY / "flywheel-tests")
    tempfile.tempdir = None  # computed again from TMPDIR
# The files that take minutes, with their seconds on one of two xdist workers on two cores;
# every other file takes under a minute and keeps its place after them.
LONGEST_FILES = {
    "test_demo.py": 1500,  # `make demo` in a browser: a first champion, then a dozen days
    "monitoring/test_monitoring_loop.py": 420,  # one test: 76 simulated days
    "model/test_model_lifecycle.py": 400,  # a dozen trainings on 24 days of 10,000 payments
    "serving/test_online_serving.py": 180,  # module fixture: 14 days, two trainings
    "integration/test_scale_out.py": 150,  # PostgreSQL, Redis, Dask, an MLflow server: 15 days
    "test_dagster_dev.py": 200,  # `make dev` in a subprocess, three times
    "test_bring_your_own_data.py": 60,  # a declared dataset from ingestion to the gate
    "ingestion/test_ingestion_assets.py": 30,
    "features/test_feature_assets.py": 30,
}
# xdist (--dist loadfile) hands each worker its first file and, as that file has at most two
# tests left, a second one at once, which runs only after the first. The longest file's worker
# would run its second file after the demo, on the critical path (a 180-400 s tail), so its
# second file is this one (under a second); the other worker takes everything else meanwhile.
SECOND_ON_THE_LONGEST_WORKER = "test_definitions_snapshot.py"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    longest = sorted(LONGEST_FILES, key=LONGEST_FILES.__getitem__, reverse=True)
    order = [*longest[:2], SECOND_ON_THE_LONGEST_WORKER, *longest[2:]]

    def place(item: pytest.Item) -> int:
        if not item.path.is_relative_to(TESTS):
            return len(order)
        name = item.path.relative_to(TESTS).as_posix()
        return order.index(name) if name in order else len(order)

    items.sort(key=place)  # stable: a file's tests stay together and in order


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on its test (``item.rep_setup``, ``rep_call``, ``rep_teardown``).

    A fixture's teardown can then tell whether the test failed, to keep artifacts only then
    (the browser's screenshots, ``support/browser.py``).
    """
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def platform(instance: DagsterInstance, tmp_path: Path) -> LocalPlatform:
    return LocalPlatform(instance, tmp_path)
