"""A story for the platform to play on a compressed clock: ``make demo``'s scenario file.

A scenario file (YAML, documented in ``resources/scenarios/default.yaml``) names the simulated
world (volume, label delay), the day the story starts and how fast simulated time runs, the
events the source suffers (a bad batch, a covariate shift, a concept drift, as the simulator's
incident and drift kinds), the release and monitoring limits tuned to the demo's time scale, and
the live traffic sent to the prediction service. Loading it gives the resources the platform runs
on; nothing else in the code knows a scenario is playing.
"""

import datetime
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from resources.clock import Clock
from resources.label_policy import LabelPolicy
from resources.monitoring_policy import MonitoringPolicy
from resources.quality_policy import QualityPolicy
from resources.release_policy import ReleasePolicy
from resources.sources.incidents import DRIFT_KINDS, INCIDENT_KINDS
from resources.sources.systems import ScenarioConfig, SimulatedSource

SCENARIO_VARIABLE = "FLYWHEEL_SCENARIO"
# In the data folder: the real instant the story's clock started (written by make demo once the
# first champion serves; until then the clock stands at the scenario's start).
STARTED_FILE = "scenario_started_at"
DEFAULT_SCENARIO = Path(__file__).resolve().parent / "scenarios" / "default.yaml"


class Event(BaseModel):
    """Something the source suffers from ``start`` to ``end`` (one day when ``end`` is absent)."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description=f"One of {INCIDENT_KINDS + DRIFT_KINDS}.")
    start: datetime.date
    end: datetime.date | None = None
    intensity: float = 1.0
    note: str = Field(default="", description="What a person watching should see happen.")

    @model_validator(mode="after")
    def _known_kind(self) -> "Event":
        if self.kind not in INCIDENT_KINDS + DRIFT_KINDS:
            raise ValueError(
                f"events[].kind must be one of {INCIDENT_KINDS + DRIFT_KINDS}, got {self.kind!r}"
            )
        if self.end is not None and self.end < self.start:
            raise ValueError(f"events[].end {self.end} is before its start {self.start}")
        return self


class Scenario(BaseModel):
    """A scenario file, checked: unknown keys and impossible values are refused by name."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    start: datetime.date = Field(description="The simulated day the clock starts on (00:00 UTC).")
    days_per_minute: float = Field(default=1.0, gt=0, description="Simulated days a real minute.")
    rows_per_day: int = Field(default=5_000, ge=100)
    label_delay_days: int = Field(default=3, ge=1, description="Chargebacks arrive within this.")
    traffic_per_second: float = Field(
        default=10.0, ge=0, description="Payments a real second sent to the prediction service."
    )
    release: dict[str, Any] = Field(default_factory=dict, description="ReleasePolicy fields.")
    monitoring: dict[str, Any] = Field(default_factory=dict, description="MonitoringPolicy fields.")
    quality: dict[str, Any] = Field(default_factory=dict, description="QualityPolicy fields.")
    events: list[Event] = Field(default_factory=list)

    def clock(self, started_file: Path) -> Clock:
        """The compressed clock: at the scenario's start until ``started_file`` says when it ran."""
        start = datetime.datetime.combine(self.start, datetime.time(), tzinfo=datetime.UTC)
        return Clock(
            simulated_from=start.isoformat(),
            real_from_file=str(started_file),
            speed=self.days_per_minute * 24 * 60,
        )

    def source(self) -> SimulatedSource:
        """The simulator with the scenario's volume, label delay and events."""
        return SimulatedSource(
            rows_per_day=self.rows_per_day,
            max_label_delay_days=self.label_delay_days,
            scenarios=[
                ScenarioConfig(
                    kind=e.kind,
                    start=e.start.isoformat(),
                    end=(e.end or e.start).isoformat(),
                    intensity=e.intensity,
                )
                for e in self.events
            ],
        )

    def resources(self, data_dir: Path) -> dict[str, Any]:
        """The resources the scenario replaces: clock, source and the policies it tunes."""
        return {
            "clock": self.clock(data_dir / STARTED_FILE),
            "source": self.source(),
            **self.policies(),
        }

    def policies(self) -> dict[str, Any]:
        """The policies the scenario tunes; a field a policy refuses raises its ValueError."""
        return {
            # Labels are trusted once the simulator's last chargeback for a day has arrived.
            "label_policy": LabelPolicy(maturity_days=self.label_delay_days),
            "release_policy": ReleasePolicy(**self.release),
            "monitoring_policy": MonitoringPolicy(**self.monitoring),
            "quality_policy": QualityPolicy(**self.quality),
        }


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario file; errors name the file and the offending field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{SCENARIO_VARIABLE}: no scenario file at {path}") from None
    try:
        scenario = Scenario.model_validate(raw or {})
        scenario.policies()  # refused here, before make demo starts anything, not in every run
        return scenario
    except ValueError as error:
        raise ValueError(f"scenario {path}: {error}") from None


def playing_scenario(data_dir: Path) -> dict[str, Any]:
    """The resources of the scenario ``make demo`` is playing in ``data_dir``, or nothing."""
    path = os.environ.get(SCENARIO_VARIABLE)
    return load_scenario(path).resources(data_dir) if path else {}


def start_clock(data_dir: Path, at: datetime.datetime) -> None:
    """Start the story's clock in ``data_dir`` at the real instant ``at`` (once; atomic)."""
    target = data_dir / STARTED_FILE
    partial = target.with_suffix(".partial")
    partial.write_text(at.isoformat())
    partial.replace(target)
