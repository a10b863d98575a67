"""Shared fixtures: a temporary Dagster instance and a local environment under ``tmp_path``."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, instance_for_test
from support.harness import LocalPlatform


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def platform(instance: DagsterInstance, tmp_path: Path) -> LocalPlatform:
    return LocalPlatform(instance, tmp_path)
