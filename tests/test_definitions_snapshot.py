"""The code location's shape, held against a checked-in snapshot.

A change of layout must not change what a user sees in the UI or what automation does: every
asset's group, owners, kinds, tags, partitions, automation condition, dependencies and resources,
every check, job, schedule and sensor. A deliberate change regenerates the snapshot with
``FLYWHEEL_UPDATE_SNAPSHOT=1 pytest tests/test_definitions_snapshot.py`` and shows in the diff.
"""

import json
import os
from pathlib import Path
from typing import Any

import pytest

from platform_assets.definitions import build_definitions

pytestmark = pytest.mark.unit

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"


def definitions_snapshot(data_dir: Path) -> dict[str, Any]:
    """What the UI and the automation see of the code location, as plain sorted data."""
    repository = build_definitions("local", data_dir=data_dir).get_repository_def()
    graph = repository.asset_graph
    assets = {}
    for key in sorted(graph.get_all_asset_keys()):
        node = graph.get(key)
        condition = node.automation_condition
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "owners": sorted(node.owners),
            "kinds": sorted(node.kinds),
            "tags": dict(sorted(node.tags.items())),
            "code_version": node.code_version,
            "partitions": str(node.partitions_def) if node.partitions_def else None,
            "automation_condition": str(condition) if condition else None,
            "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
            "resources": sorted(graph.assets_def_for_key(key).required_resource_keys),
        }
    checks = {}
    for check_key in sorted(graph.asset_check_keys, key=lambda k: (k.asset_key, k.name)):
        check = graph.get(check_key)
        condition = check.automation_condition
        checks[f"{check_key.asset_key.to_user_string()}:{check_key.name}"] = {
            "blocking": check.blocking,
            "automation_condition": str(condition) if condition else None,
        }
    return {
        "assets": assets,
        "checks": checks,
        "jobs": {
            job.name: sorted(k.to_user_string() for k in job.asset_layer.selected_asset_keys)
            for job in repository.get_all_jobs()
            if not job.name.startswith("__")
        },
        "schedules": sorted(
            f"{s.name} ({s.cron_schedule}, {s.job_name})" for s in repository.schedule_defs
        ),
        "sensors": sorted(s.name for s in repository.sensor_defs),
    }


def test_the_code_location_matches_its_snapshot(tmp_path):
    current = definitions_snapshot(tmp_path)

    if os.environ.get("FLYWHEEL_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    expected = json.loads(SNAPSHOT.read_text(encoding="utf-8"))

    assert current == expected
