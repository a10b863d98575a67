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
    "test_demo.py": 1200,  # `make demo` in a browser: a first champion, then a dozen days
    "monitoring/test_monitoring_loop.py": 560,  # one test: 76 simulated days
    "model/test_model_lifecycle.py": 400,  # a dozen trainings on 24 days of 10,000 payments
    "serving/test_online_serving.py": 180,  # module fixture: 14 days, two trainings
    "test_dagster_dev.py": 200,  # `make dev` in a subprocess, three times
    "ingestion/test_ingestion_assets.py": 30,
    "features/test_feature_assets.py": 30,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def seconds(item: pytest.Item) -> int:
        if not item.path.is_relative_to(TESTS):
            return 0
        return LONGEST_FILES.get(item.path.relative_to(TESTS).as_posix(), 0)

    items.sort(key=seconds, reverse=True)  # stable: a file's tests stay together and in order


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
