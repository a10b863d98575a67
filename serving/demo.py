"""`make demo`'s part of the supervisor: the scenario's live traffic and the start of its clock.

The platform plays a scenario through its resources alone (``FLYWHEEL_SCENARIO``, read in every
process Dagster starts). Two things need a process of their own: live traffic for the prediction
service (the canary is judged on it), and the moment the story's clock starts, which is when the
first champion serves, so that the bootstrap's history is the days before the scenario's start
however long this machine takes to build it.
"""

import datetime
import logging
import os
import sys
import threading
from pathlib import Path

from resources.environments import local_data_dir
from resources.model_registry import ModelRegistry
from resources.scenario import SCENARIO_VARIABLE, STARTED_FILE, load_scenario, start_clock

log = logging.getLogger("serving.demo")

# How often the registry is asked whether the first champion serves.
CHAMPION_POLL_SECONDS = 5.0


def play(scenario_path: Path, serving_port: int) -> tuple[str, ...] | None:
    """Make every process started from now on play ``scenario_path``; the traffic's argv."""
    scenario = load_scenario(scenario_path)  # a wrong file stops make demo before anything runs
    os.environ[SCENARIO_VARIABLE] = str(scenario_path)
    log.info("playing %s: %s", scenario_path, scenario.description)
    if not scenario.traffic_per_second:
        return None
    url = f"http://127.0.0.1:{serving_port}"
    rate = str(scenario.traffic_per_second)
    return (
        sys.executable,
        "-m",
        "serving.model.replayer",
        "--follow",
        "--url",
        url,
        "--rate",
        rate,
    )


def start_clock_with_first_champion(registry: ModelRegistry, stop: threading.Event) -> None:
    """Start the story's clock once the registry names a champion (or return on ``stop``)."""
    data_dir = local_data_dir()
    if (data_dir / STARTED_FILE).exists():
        return
    while not stop.wait(CHAMPION_POLL_SECONDS):
        champion = registry.champion()
        if champion is not None:
            start_clock(data_dir, datetime.datetime.now(datetime.UTC))
            log.info("version %s is champion: the story's clock starts", champion.version)
            return
