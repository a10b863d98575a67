"""Onboard a declared dataset on a fresh instance, as a user would, and say what happened.

Run as a script in its own process, since a code location serves the one dataset
``$FLYWHEEL_DATASET`` declares from the moment it is imported (its partitions start on the
declared first day): ``python tests/support/onboarding.py '<json plan>'`` with
``FLYWHEEL_DATASET``, ``FLYWHEEL_DATA_DIR`` and ``DAGSTER_HOME`` set. The plan names the days to
ingest, the days of the first drift baseline, the instant the clock stands at and the training
set's config. The code location's own resources are used unchanged (only the clock is frozen,
as the launchpad would set it); the last line of output is a JSON summary.
"""

import json
import sys
from pathlib import Path
from typing import Any

import polars as pl
from dagster import AssetSelection, DagsterInstance, materialize

from platform_assets.common.partitions import daily_partitions
from platform_assets.definitions import build_definitions, stage_assets
from platform_assets.model.evaluation_report import GATE_CHECK
from resources.clock import Clock

# A day's feature rows (support/harness.py's DAY_FEATURES: this script runs on its own path).
DAY_FEATURES = AssetSelection.assets(
    "customer_daily_activity", "customer_features", "merchant_features"
)

TO_THE_GATE = AssetSelection.assets(
    "feature_store_registry", "training_set", "candidate_model", "evaluation_report"
)


def onboard(plan: dict[str, Any]) -> dict[str, Any]:
    """Ingest, compute features, build a training set, train a candidate and judge it."""
    defs = build_definitions("local")
    resources = {**defs.resources, "clock": Clock(frozen_at=plan["now"])}
    instance = DagsterInstance.get()
    assets = stage_assets()

    def run(selection: AssetSelection, partition: str | None = None, config: dict | None = None):
        return materialize(
            assets,
            selection=selection,
            partition_key=partition,
            resources=resources,
            instance=instance,
            run_config=config,
            raise_on_error=False,
        )

    failed: list[str] = []
    # Every check's verdicts over the runs: name -> [passed, ...].
    verdicts_over_runs: dict[str, list[bool]] = {}

    def record(name: str, result) -> None:
        for evaluation in result.get_asset_check_evaluations():
            verdicts_over_runs.setdefault(evaluation.check_name, []).append(evaluation.passed)
        if not result.success:
            errors = [e.event_specific_data.error.message for e in result.get_step_failure_events()]
            failed.append(f"{name}: {' | '.join(errors)[:2000]}")

    for position, day in enumerate(plan["days"]):
        # The daily job's work in one run: the day's ingestion, then its feature rows.
        record(f"day {day}", run(AssetSelection.groups("ingestion") | DAY_FEATURES, day))
        if position + 1 == len(plan["baseline_days"]):
            baseline = {"partitions": plan["baseline_days"], "reason": "onboarding"}
            config = {"ops": {"transaction_baseline": {"config": baseline}}}
            record("baseline", run(AssetSelection.assets("transaction_baseline"), config=config))
    config = {"ops": {"training_set": {"config": plan["training_set"]}}}
    result = run(TO_THE_GATE, config=config)
    record("training to the gate", result)
    lake = Path(resources["lake"].root)
    evaluations = result.get_asset_check_evaluations()
    checks = {f"{e.asset_key.to_user_string()}:{e.check_name}": e.passed for e in evaluations}
    verdicts = {
        e.check_name: {key: str(value.value) for key, value in e.metadata.items()}
        for e in evaluations
    }
    metadata = {
        step.asset_key.to_user_string(): {
            key: value.value
            for key, value in step.step_materialization_data.materialization.metadata.items()
        }
        for step in result.get_asset_materialization_events()
        if step.asset_key
    }
    quarantine = sorted(lake.glob("quarantined_transactions/*.parquet"))
    candidate = metadata.get("candidate_model", {})
    model_inputs = []
    if "mlflow_run" in candidate:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(resources["model_registry"].tracking_uri)
        run_id = candidate["mlflow_run"].rsplit("/", 1)[-1]
        model_inputs = client.get_run(run_id).data.params["features"].split(",")
    return {
        "first_partition": daily_partitions.get_first_partition_key(),
        "failed": failed,
        "validated_columns": pl.read_parquet(
            next(lake.glob("validated_transactions/*.parquet"))
        ).columns,
        "quarantined": pl.concat([pl.read_parquet(p) for p in quarantine]).to_dicts()
        if quarantine
        else [],
        "labels": sum(pl.read_parquet(p).height for p in lake.glob("fraud_labels/*.parquet")),
        "gate_passed": checks.get(f"evaluation_report:{GATE_CHECK}"),
        "gate_verdict": verdicts.get(GATE_CHECK),
        "checks": checks,
        "checks_over_runs": verdicts_over_runs,
        "training_set": {k: str(v) for k, v in metadata.get("training_set", {}).items()},
        "candidate": {k: str(v) for k, v in candidate.items()},
        "model_inputs": model_inputs,
        "training_columns": pl.read_parquet(lake / "training_set.parquet").columns
        if (lake / "training_set.parquet").exists()
        else [],
    }


if __name__ == "__main__":
    sys.stdout.write(json.dumps(onboard(json.loads(sys.argv[1])), default=str) + "\n")
