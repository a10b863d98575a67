"""The layout's rules, held by reading the imports: what may depend on what.

- ``serving/`` and ``resources/`` never import ``platform_assets/`` or ``sensors/``;
- ``sensors/`` take partitions, keys and group names from ``platform_assets.common``, never an
  asset's body;
- a stage's concept modules (logic named after a concept, not an asset) import no Dagster, so
  tests and benchmarks call them directly.
"""

import ast
from pathlib import Path

import pytest

from resources.environments import PROJECT_ROOT

pytestmark = pytest.mark.unit

CONCEPT_MODULES = (
    "platform_assets/common/markdown.py",
    "platform_assets/ingestion/contract.py",
    "platform_assets/ingestion/anomalies.py",
    "platform_assets/ingestion/drift.py",
    "platform_assets/features/engineering.py",
    "platform_assets/features/merchant_risk.py",
    "platform_assets/features/sharding.py",
    "platform_assets/features/labelling.py",
    "platform_assets/features/skew.py",
    "platform_assets/model/recipe.py",
    "platform_assets/model/dask_training.py",
    "platform_assets/model/suite.py",
    "platform_assets/model/gate.py",
    "platform_assets/model/artifacts.py",
    "platform_assets/model/tracking.py",
    "platform_assets/model/canary.py",
    "platform_assets/monitoring/reference.py",
    "platform_assets/monitoring/performance.py",
    "platform_assets/monitoring/verdicts.py",
    "platform_assets/llm/golden_set.py",
    "platform_assets/llm/spend.py",
)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of the file (functions included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def python_files(folder: str) -> list[Path]:
    return sorted((PROJECT_ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", ["serving", "resources"])
def test_serving_and_resources_never_import_the_pipeline(folder):
    found = {
        f"{path.relative_to(PROJECT_ROOT)}: {module}"
        for path in python_files(folder)
        for module in imported_modules(path)
        if module.split(".")[0] in ("platform_assets", "sensors")
    }
    assert not found


def test_sensors_import_only_the_common_package_of_the_pipeline():
    found = {
        f"{path.relative_to(PROJECT_ROOT)}: {module}"
        for path in python_files("sensors")
        for module in imported_modules(path)
        if module.startswith("platform_assets") and not module.startswith("platform_assets.common")
    }
    assert not found


def test_concept_modules_import_no_dagster():
    assert all((PROJECT_ROOT / module).exists() for module in CONCEPT_MODULES)
    found = {
        f"{module}: {name}"
        for module in CONCEPT_MODULES
        for name in imported_modules(PROJECT_ROOT / module)
        if name.split(".")[0] in ("dagster", "dagster_mlflow")
    }
    assert not found
