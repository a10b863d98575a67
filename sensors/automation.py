"""Declarative automation for the whole code location, set once here.

Assets and checks carry their own automation conditions (the feature store applies its registry
when the definitions change and reloads the online store on new rows; the LLM pipeline evaluates
every new prompt or index version and refreshes its reports hourly); this sensor evaluates them
all. Dagster's default automation sensor starts stopped under ``dagster dev``; this one is on by
default. Assets without a condition are never touched by it.
"""

from dagster import AssetSelection, AutomationConditionSensorDefinition, DefaultSensorStatus

automation_sensor = AutomationConditionSensorDefinition(
    "automation_sensor",
    target=AssetSelection.all(),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Evaluates every asset's and check's automation condition every 30 seconds.",
)
