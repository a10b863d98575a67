"""How an asset is catalogued: its group, owners and stage tag, declared once per group.

The groups are the stages a person sees in the UI; each package of ``platform_assets`` holds the
assets of its groups. ``catalog(group)`` gives the keyword arguments every asset of a group
shares, and ``daily_table`` the decorator of the daily partitioned tables.
"""

import datetime
import functools
from typing import Any

from dagster import FreshnessPolicy, asset

from platform_assets.common.partitions import daily_partitions

OWNERS = ["team:ml-platform"]
# What is refreshed once a day: late after 25 h, failed after 26 h (the day lands by 00:30 and
# ingestion runs at 01:00, so a healthy day is never past either).
DAILY_FRESHNESS = FreshnessPolicy.time_window(
    fail_window=datetime.timedelta(hours=26), warn_window=datetime.timedelta(hours=25)
)

INGESTION = "ingestion"
BASELINES = "baselines"
FEATURES = "features"
TRAINING = "training"
EVALUATION = "evaluation"
DEPLOYMENT = "deployment"
MONITORING = "monitoring"
LLM = "llm"

# The lifecycle stage each group belongs to, shown as the ``flywheel/stage`` tag. A baseline is
# accepted in its own group (never by the daily run) but belongs to ingestion's quality gate.
_STAGES = {
    INGESTION: "ingest",
    BASELINES: "ingest",
    FEATURES: "features",
    TRAINING: "training",
    EVALUATION: "evaluation",
    DEPLOYMENT: "deployment",
    MONITORING: "monitoring",
    LLM: "llm",
}


def catalog(group: str) -> dict[str, Any]:
    """Group, owners and stage tag of an asset of ``group``, as ``@asset`` keyword arguments."""
    return {"group_name": group, "owners": OWNERS, "tags": {"flywheel/stage": _STAGES[group]}}


def daily_table(group: str, kinds: set[str]):
    """The ``@asset`` decorator of a table stored one parquet file per business day."""
    return functools.partial(
        asset,
        partitions_def=daily_partitions,
        kinds=kinds,
        code_version="1",
        **catalog(group),
    )
