"""The platform's loop on a simulated clock, driven only by its sensors and automation.

Each simulated day the driver moves the clock past the day's delivery and ticks what the daemon
would tick: the ingestion sensor, the automation condition sensor, the retraining and
monitoring sensors. It runs every run they request on the test instance, in order, and keeps a
log of what happened. Nothing calls an asset function directly.
"""

import datetime
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from dagster import (
    AssetKey,
    AssetSelection,
    Definitions,
    build_sensor_context,
    evaluate_automation_conditions,
)

from resources.clock import Clock
from resources.sources.systems import ScenarioConfig
from sensors.deployment import canary_sensor, promotion_sensor
from sensors.ingestion import ingestion_sensor
from sensors.monitoring import monitoring_freshness_sensor, retraining_sensor
from support.harness import LocalPlatform

# The model loop; the LLM pipeline's automation is tested on its own.
LOOP = AssetSelection.groups("features", "training", "evaluation", "deployment", "monitoring")
# Ingestion runs at 01:00; the loop's ticks follow it.
TICK_TIME = datetime.time(1, 5, tzinfo=datetime.UTC)


@dataclass
class LoopDriver:
    """Ticks the platform's automation day by day and records the runs it requested."""

    platform: LocalPlatform
    scenarios: Sequence[ScenarioConfig]
    automation_cursor: str | None = None
    sensor_cursors: dict[str, str | None] = field(default_factory=dict)
    # (simulated day, what happened, details), in order.
    events: list[tuple[str, str, dict]] = field(default_factory=list)
    sensors: tuple = (
        retraining_sensor,
        promotion_sensor,
        canary_sensor,
        monitoring_freshness_sensor,
    )
    today: str = ""

    def definitions(self, now: datetime.datetime) -> Definitions:
        self.platform.clock = Clock(frozen_at=now.isoformat())
        return self.platform.definitions(self.scenarios)

    def day(self, day: str) -> None:
        """The daemon's work on the morning after ``day``."""
        self.today = day
        now = datetime.datetime.combine(
            datetime.date.fromisoformat(day) + datetime.timedelta(days=1), TICK_TIME
        )
        defs = self.definitions(now)
        self._automation(defs, now)  # the tick before the day lands, as the daemon's last one
        for request in self._tick(defs, ingestion_sensor).run_requests or []:
            result = defs.resolve_job_def("ingestion_job").execute_in_process(
                instance=self.platform.instance,
                partition_key=request.partition_key,
                tags=request.tags,
            )
            self.events.append((day, "ingested", {"success": result.success, "run": result.run_id}))
        self._automation(defs, now)
        for sensor in self.sensors:
            self._sensor(defs, sensor, day)
            self._automation(defs, now)

    def _automation(self, defs: Definitions, now: datetime.datetime) -> None:
        """Automation ticks until nothing more is requested, each requested run executed."""
        while True:
            result = evaluate_automation_conditions(
                defs=defs,
                instance=self.platform.instance,
                asset_selection=LOOP,
                evaluation_time=now,
                cursor=self.automation_cursor,
            )
            self.automation_cursor = result.cursor
            if not result.total_requested:
                return
            by_partition: dict[str | None, list[AssetKey]] = defaultdict(list)
            for item in result.results:
                if item.true_subset.size and isinstance(item.key, AssetKey):
                    for partition in result.get_requested_partitions(item.key):
                        by_partition[partition].append(item.key)
            for partition, keys in by_partition.items():
                self._run(defs, keys, partition, {}, {"dagster/from_automation": "true"})

    def _tick(self, defs: Definitions, sensor):
        """One evaluation of ``sensor`` with its cursor, as the daemon's tick."""
        context = build_sensor_context(
            instance=self.platform.instance,
            cursor=self.sensor_cursors.get(sensor.name),
            definitions=defs,
            # The daemon builds only the resources a sensor asks for.
            resources={key: defs.resources[key] for key in sensor.required_resource_keys},
        )
        tick = sensor.evaluate_tick(context)
        self.sensor_cursors[sensor.name] = tick.cursor
        return tick

    def _sensor(self, defs: Definitions, sensor, day: str) -> None:
        tick = self._tick(defs, sensor)
        if tick.skip_message:
            self.events.append((day, f"{sensor.name} skipped", {"reason": tick.skip_message}))
        for request in tick.run_requests or []:
            self.events.append((day, f"{sensor.name} requested", dict(request.tags)))
            self._run(
                defs,
                list(request.asset_selection or []),
                request.partition_key,
                request.run_config,
                dict(request.tags),
            )

    def _run(
        self,
        defs: Definitions,
        keys: list[AssetKey],
        partition: str | None,
        run_config: dict,
        tags: dict,
    ) -> None:
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=self.platform.instance,
            partition_key=partition,
            asset_selection=keys,
            run_config=run_config,
            tags=tags,
            raise_on_error=False,
        )
        names = ",".join(sorted(k.to_user_string() for k in keys))
        self.events.append(
            (
                self.today,
                f"ran {names}",
                {"partition": partition, "success": result.success, "run": result.run_id},
            )
        )
