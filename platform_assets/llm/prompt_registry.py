"""The prompt registry: prompt files in the repository, versioned and labelled.

Materializing ``prompt_registry`` records the versions the files hold now. A version is a
content hash, so an unchanged file is the same version; each label move (a new production or
candidate) is appended to the registry's history, which the asset's metadata shows in the UI.
``prompt_change_sensor`` materializes it when a prompt file changes, and the evaluation
follows by declarative automation.
"""

import hashlib
from pathlib import Path

import polars as pl
from dagster import DataVersion, MaterializeResult, MetadataValue, asset

from platform_assets.common.catalog import LLM, catalog
from platform_assets.common.markdown import to_markdown
from resources.clock import Clock
from resources.llm.prompts import PromptRegistry


@asset(kinds={"toml", "json"}, code_version="1", **catalog(LLM))
def prompt_registry(context, prompts: PromptRegistry, clock: Clock) -> MaterializeResult:
    """Every prompt version (content hash) with its label, model and parameters.

    The source of truth is the prompt files under serving/prompts; this asset records which
    version each label points at, and the full label history, so it can be browsed and the
    gateway can serve any approved version.
    """
    current = prompts.read_files()
    moved = prompts.record(current, clock.now())
    for entry in moved:
        context.log.info(
            f"{entry['use_case']}/{entry['label']}: {entry['previous']} -> {entry['version']}"
        )
    versions = pl.DataFrame(
        [
            {
                "use_case": p.use_case,
                "label": p.label,
                "version": p.version,
                "model": p.model,
                "parameters": ", ".join(f"{k}={v}" for k, v in sorted(p.parameters.items())),
                "file": "/".join(Path(p.source).parts[-2:]),
            }
            for labels in current.values()
            for p in labels.values()
        ]
    )
    history = pl.DataFrame(list(reversed(prompts.history())))
    pointers = versions.select("use_case", "label", "version").sort("use_case", "label")
    fingerprint = ",".join(f"{u}/{label}={v}" for u, label, v in pointers.iter_rows())
    return MaterializeResult(
        data_version=DataVersion(hashlib.sha256(fingerprint.encode()).hexdigest()[:16]),
        metadata={
            "versions": MetadataValue.md(to_markdown(versions)),
            "label_history": MetadataValue.md(to_markdown(history, limit=30)),
            "changed_labels": MetadataValue.int(len(moved)),
            "use_cases": MetadataValue.json(sorted(current)),
        },
    )
