"""Scenario files: the shipped ones load, and a wrong one is refused naming the field."""

import datetime

import pytest

from resources.environments import PROJECT_ROOT
from resources.scenario import DEFAULT_SCENARIO, load_scenario, start_clock

pytestmark = pytest.mark.unit

SHIPPED = [DEFAULT_SCENARIO, PROJECT_ROOT / "tests/scenarios/short.yaml"]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_scenarios_load_into_the_resources_they_replace(path, tmp_path):
    scenario = load_scenario(path)

    resources = scenario.resources(tmp_path)

    assert resources["clock"].simulated_from.startswith(scenario.start.isoformat())
    assert resources["source"].max_label_delay_days == scenario.label_delay_days
    assert resources["label_policy"].maturity_days == scenario.label_delay_days
    assert [s.kind for s in resources["source"].scenarios] == [e.kind for e in scenario.events]
    tuned = {
        "release": "release_policy",
        "monitoring": "monitoring_policy",
        "quality": "quality_policy",
    }
    for key, resource in tuned.items():
        for field, value in getattr(scenario, key).items():
            assert getattr(resources[resource], field) == value, (key, field)


def test_the_clock_stands_at_the_start_until_started_then_runs_at_the_scenario_speed(tmp_path):
    scenario = load_scenario(DEFAULT_SCENARIO)
    clock = scenario.resources(tmp_path)["clock"]
    start = datetime.datetime.combine(scenario.start, datetime.time(), tzinfo=datetime.UTC)

    assert clock.now() == start, "the story waits for the first champion"

    start_clock(tmp_path, datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=2))
    elapsed_days = (clock.now() - start) / datetime.timedelta(days=1)
    assert elapsed_days == pytest.approx(2 * scenario.days_per_minute, rel=0.01)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("start: 2026-03-01\nspeed: 2\n", "speed"),
        ("start: 2026-03-01\nevents: [{kind: meteor, start: 2026-03-02}]\n", "meteor"),
        (
            "start: 2026-03-01\nevents: [{kind: null_spike, start: 2026-03-05, end: 2026-03-02}]\n",
            "before its start",
        ),
        ("start: 2026-03-01\nrelease: {canary_share: 0.5}\n", "canary_share"),
        # Too few predictions for the score shift's ten bins (ReleasePolicy.min_sample).
        ("start: 2026-03-01\nrelease: {min_sample: 30}\n", "min_sample"),
    ],
)
def test_a_wrong_scenario_is_refused_naming_what_is_wrong(tmp_path, text, named):
    path = tmp_path / "story.yaml"
    path.write_text(text)

    with pytest.raises(ValueError, match=named) as error:
        load_scenario(path)

    assert "story.yaml" in str(error.value)


def test_a_missing_scenario_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.yaml"):
        load_scenario(tmp_path / "nowhere.yaml")
