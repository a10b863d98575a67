"""Changing a feature definition shows what was built on it as stale, as the UI reports it.

The registry, the online store and the training set carry the definitions' hash in their code
versions, so an edit marks them stale at once; once the registry is applied again, Dagster's
data versions mark what reads it stale too (models, in the training stage).

The code location runs out of process, as under ``dagster dev``, and is asked through the same
GraphQL API the UI uses; after a definition file changes, it is loaded again.
"""

import shutil
from pathlib import Path

import pytest
from dagster import AssetSelection, instance_for_test
from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql
from support.harness import DAY_FEATURES, LocalPlatform

from resources.feature_store import FEATURE_REPO

pytestmark = pytest.mark.asset_graph

STALENESS = """
query Staleness {
  assetNodes {
    assetKey { path }
    staleStatus
    opVersion
    staleCauses { key { path } category reason }
  }
}
"""


def staleness(location_file: Path, instance) -> dict[str, tuple[str, list[dict], str]]:
    with define_out_of_process_context(str(location_file), "location", instance) as context:
        result = execute_dagster_graphql(context, STALENESS)
    assert result.errors is None, result.errors
    return {
        "/".join(node["assetKey"]["path"]): (
            node["staleStatus"],
            node["staleCauses"],
            node["opVersion"],
        )
        for node in result.data["assetNodes"]
    }


def test_changing_a_feature_definition_marks_downstream_stale(tmp_path: Path):
    repo = tmp_path / "feature_repo"
    shutil.copytree(FEATURE_REPO, repo, ignore=shutil.ignore_patterns("__pycache__"))
    data = tmp_path / "data"
    location_file = tmp_path / "location.py"
    location_file.write_text(
        "from pathlib import Path\n\n"
        "from platform_assets.definitions import build_definitions\n\n\n"
        "def location():\n"
        f"    return build_definitions('local', data_dir={str(data)!r}, "
        f"feature_repo=Path({str(repo)!r}))\n"
    )
    with instance_for_test() as instance:
        platform = LocalPlatform(
            instance, data, rows_per_day=200, feature_repo=repo, now="2026-01-03T06:00:00+00:00"
        )
        for day in ("2026-01-01", "2026-01-02"):
            assert platform.ingest(day).success
            assert platform.materialize(DAY_FEATURES, day).success
        assert platform.materialize(
            AssetSelection.assets("feature_store_registry", "online_features")
        ).success

        before = staleness(location_file, instance)
        assert before["feature_store_registry"][0] == "FRESH"
        assert before["online_features"][0] == "FRESH"

        definitions = repo / "fraud_detection.py"
        definitions.write_text(
            definitions.read_text().replace("ttl=timedelta(days=7)", "ttl=timedelta(days=8)")
        )
        changed = staleness(location_file, instance)
        # Applying the changed repository (materializing the stale registry) gives it a new
        # data version, which what was built on the old definitions is then stale against.
        reloaded = LocalPlatform(
            instance, data, rows_per_day=200, feature_repo=repo, now="2026-01-03T06:00:00+00:00"
        )
        assert reloaded.materialize(AssetSelection.assets("feature_store_registry")).success
        applied = staleness(location_file, instance)

    code_change = {"category": "CODE", "reason": "has a new code version"}
    for key in ("feature_store_registry", "online_features"):
        status, causes, _ = changed[key]
        assert status == "STALE"
        assert code_change.items() <= causes[0].items()
    assert applied["feature_store_registry"][0] == "FRESH"
    status, causes, _ = applied["online_features"]
    assert status == "STALE"
    assert any(
        cause["category"] == "DATA" and cause["key"]["path"] == ["feature_store_registry"]
        for cause in causes
    ), causes
