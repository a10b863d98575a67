"""The ingestion quality gate: checks on every delivered day of transactions and labels.

Blocking checks (contract, volume, distribution) stop a bad batch: when one fails with ERROR,
nothing downstream of ``raw_transactions`` materializes in that run, the raw rows stay stored,
and an alert goes out. The others (null rate, duplicate rate) record a warning and let the day
proceed, its bad rows quarantined. Each check reads the stored partition, so any of them can be
re-executed on its own from the UI, e.g. after a new baseline is accepted.
"""

import datetime
import functools
from typing import Any

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from platform_assets.common.keys import FRAUD_LABELS, RAW_TRANSACTIONS
from platform_assets.common.markdown import to_markdown
from platform_assets.common.partitions import daily_partitions, partition_day
from platform_assets.ingestion.anomalies import duplicate_rate, null_rates, volume_ratio
from platform_assets.ingestion.contract import (
    failure_summary,
    validate_chargebacks,
    validate_transactions,
)
from platform_assets.ingestion.drift import distribution_drift, write_drift_report
from platform_assets.ingestion.transaction_baseline import BASELINE
from resources.alerting import Alerter
from resources.lake import BaselineNotAccepted, Lake
from resources.quality_policy import QualityPolicy

CONTRACT_CHECK = "contract"
VOLUME_CHECK = "volume"
NULL_RATE_CHECK = "null_rate"
DUPLICATE_RATE_CHECK = "duplicate_rate"
DRIFT_CHECK = "distribution_drift"
LABELS_CONTRACT_CHECK = "labels_contract"
# Fewer stored days than this and the volume check compares with the baseline's average instead.
_MIN_VOLUME_HISTORY = 3
ACCEPT_BASELINE_HINT = (
    "Accept a baseline: materialize transaction_baseline with config "
    "{ops: {transaction_baseline: {config: {partitions: [...], reason: ...}}}} "
    "(see README, 'Accepting a new baseline')."
)


# Every check here judges one stored partition of raw_transactions.
raw_transactions_check = functools.partial(
    asset_check, asset=RAW_TRANSACTIONS, partitions_def=daily_partitions
)


def _verdict(
    context: AssetCheckExecutionContext,
    alerter: Alerter,
    passed: bool,
    severity: AssetCheckSeverity,
    description: str,
    metadata: dict[str, Any],
) -> AssetCheckResult:
    """The check result; a failing ERROR check also alerts, since it halts the day."""
    spec = context.check_specs[0]
    check_name, asset = spec.name, spec.asset_key.to_user_string()
    if not passed and severity == AssetCheckSeverity.ERROR:
        alerter.send(
            title=f"{asset} {context.partition_key} halted by {check_name}",
            message=f"{description} Its rows are kept for replay; nothing downstream ran.",
            asset=asset,
            partition=context.partition_key,
            check=check_name,
            run_id=context.run.run_id,
        )
    return AssetCheckResult(
        passed=passed, severity=severity, description=description, metadata=metadata
    )


def _accepted_profile(lake: Lake) -> tuple[str, dict[str, Any]] | None:
    try:
        return lake.accepted_baseline(BASELINE)
    except BaselineNotAccepted:
        return None


@raw_transactions_check(
    name=CONTRACT_CHECK,
    blocking=True,
    description=(
        "pandera contract: types, ranges, allowed values, nullability, unique ids. Bad rows are "
        "quarantined (WARN); a schema break or too many bad rows halts the day (ERROR)."
    ),
)
def transactions_contract(
    context: AssetCheckExecutionContext,
    raw_transactions: pl.DataFrame,
    quality_policy: QualityPolicy,
    alerter: Alerter,
) -> AssetCheckResult:
    """Judge the batch against the data contract."""
    result = validate_transactions(raw_transactions, partition_day(context.partition_key))
    limit = quality_policy.max_bad_row_share
    metadata = {
        "rows": MetadataValue.int(result.rows),
        "bad_rows": MetadataValue.int(result.bad_rows),
        "bad_row_share": MetadataValue.float(round(result.bad_row_share, 6)),
        "max_bad_row_share": MetadataValue.float(limit),
        "schema_failures": MetadataValue.int(result.schema_failures.height),
        "failure_cases": MetadataValue.md(to_markdown(failure_summary(result))),
    }
    if result.schema_failures.height:
        columns = ", ".join(sorted(set(result.schema_failures["column"].to_list())))
        description = f"Schema break in {columns}: the batch does not match the contract."
        return _verdict(context, alerter, False, AssetCheckSeverity.ERROR, description, metadata)
    if result.bad_row_share > limit:
        description = (
            f"{result.bad_rows} of {result.rows} rows ({result.bad_row_share:.2%}) break the "
            f"contract, over the {limit:.2%} tolerance."
        )
        return _verdict(context, alerter, False, AssetCheckSeverity.ERROR, description, metadata)
    description = (
        f"{result.bad_rows} of {result.rows} rows break the contract and go to quarantine."
        if result.bad_rows
        else "Every row meets the contract."
    )
    return _verdict(
        context, alerter, result.bad_rows == 0, AssetCheckSeverity.WARN, description, metadata
    )


@raw_transactions_check(
    name=VOLUME_CHECK,
    blocking=True,
    description=(
        "Row count against the median of the trailing stored days (or the baseline's average): "
        "a collapse or an explosion halts the day."
    ),
)
def transactions_volume(
    context: AssetCheckExecutionContext,
    raw_transactions: pl.DataFrame,
    quality_policy: QualityPolicy,
    lake: Lake,
    alerter: Alerter,
) -> AssetCheckResult:
    """Compare the day's volume with the days before it."""
    day = partition_day(context.partition_key)
    earlier = [
        day - datetime.timedelta(days=n) for n in range(1, quality_policy.volume_history_days + 1)
    ]
    history = [
        n
        for n in (lake.row_count(RAW_TRANSACTIONS, d.isoformat()) for d in earlier)
        if n is not None
    ]
    reference = "median of the trailing stored days"
    if len(history) < _MIN_VOLUME_HISTORY:
        accepted = _accepted_profile(lake)
        history = [round(accepted[1]["rows_per_day"])] if accepted else []
        reference = "baseline's average day"
    ratio = volume_ratio(raw_transactions.height, history)
    metadata = {
        "rows": MetadataValue.int(raw_transactions.height),
        "history_days": MetadataValue.int(len(history)),
        "reference": MetadataValue.text(reference),
    }
    if ratio is None:
        description = "No history and no baseline yet: volume recorded, not judged."
        return _verdict(context, alerter, True, AssetCheckSeverity.WARN, description, metadata)
    metadata["volume_ratio"] = MetadataValue.float(round(ratio, 4))
    low, high = quality_policy.min_volume_ratio, quality_policy.max_volume_ratio
    passed = low <= ratio <= high
    description = (
        f"{raw_transactions.height} rows, {ratio:.2f}x the {reference} "
        f"(allowed {low:g}x to {high:g}x)."
    )
    return _verdict(context, alerter, passed, AssetCheckSeverity.ERROR, description, metadata)


@raw_transactions_check(
    name=NULL_RATE_CHECK,
    description="Per-column null rate against the accepted baseline's (warns; rows quarantined).",
)
def transactions_null_rate(
    context: AssetCheckExecutionContext,
    raw_transactions: pl.DataFrame,
    quality_policy: QualityPolicy,
    lake: Lake,
    alerter: Alerter,
) -> AssetCheckResult:
    """Spot a spike of nulls in any column."""
    accepted = _accepted_profile(lake)
    baseline = accepted[1]["null_rates"] if accepted else {}
    rates = null_rates(raw_transactions)
    table = pl.DataFrame(
        {
            "column": list(rates),
            "null_rate": list(rates.values()),
            "baseline": [baseline.get(c, 0.0) for c in rates],
        }
    ).with_columns(increase=pl.col("null_rate") - pl.col("baseline"))
    spikes = table.filter(pl.col("increase") > quality_policy.max_null_rate_increase)
    description = (
        f"Null spike in {', '.join(spikes['column'].to_list())}."
        if spikes.height
        else "Null rates are in line with the baseline."
    )
    metadata = {
        "max_increase": MetadataValue.float(
            round(table.select(pl.col("increase").max()).item() or 0.0, 6)
        ),
        "null_rates": MetadataValue.md(to_markdown(table.sort("increase", descending=True))),
    }
    return _verdict(
        context, alerter, spikes.is_empty(), AssetCheckSeverity.WARN, description, metadata
    )


@raw_transactions_check(
    name=DUPLICATE_RATE_CHECK,
    description="Share of repeated transaction ids (warns; the repeats are quarantined).",
)
def transactions_duplicate_rate(
    context: AssetCheckExecutionContext,
    raw_transactions: pl.DataFrame,
    quality_policy: QualityPolicy,
    alerter: Alerter,
) -> AssetCheckResult:
    """Spot a source that re-sends rows."""
    rate = duplicate_rate(raw_transactions)
    limit = quality_policy.max_duplicate_rate
    description = f"{rate:.3%} of rows repeat an earlier transaction_id (allowed {limit:.3%})."
    metadata = {
        "duplicate_rate": MetadataValue.float(round(rate, 6)),
        "max_duplicate_rate": MetadataValue.float(limit),
    }
    return _verdict(context, alerter, rate <= limit, AssetCheckSeverity.WARN, description, metadata)


@raw_transactions_check(
    name=DRIFT_CHECK,
    blocking=True,
    description=(
        "PSI per column against the accepted baseline: warn at QualityPolicy.drift_warn, halt at "
        "drift_halt. Links an Evidently HTML report of a day that warns or halts."
    ),
)
def transactions_distribution_drift(
    context: AssetCheckExecutionContext,
    raw_transactions: pl.DataFrame,
    quality_policy: QualityPolicy,
    lake: Lake,
    alerter: Alerter,
) -> AssetCheckResult:
    """Compare the day's distributions with the accepted baseline."""
    accepted = _accepted_profile(lake)
    if accepted is None:
        # As the volume check without history: nothing to judge against is not a failure.
        description = (
            "No accepted baseline yet: distributions recorded, not judged (on an empty instance "
            f"bootstrap_sensor accepts the first days). {ACCEPT_BASELINE_HINT}"
        )
        return _verdict(context, alerter, True, AssetCheckSeverity.WARN, description, {})
    version, profile = accepted
    table = distribution_drift(
        raw_transactions, profile, quality_policy.drift_warn, quality_policy.drift_halt
    )
    halted = table.filter(pl.col("verdict") == "halt")["column"].to_list()
    warned = table.filter(pl.col("verdict") == "warn")["column"].to_list()
    metadata: dict[str, Any] = {
        "baseline_version": MetadataValue.text(version),
        "max_psi": MetadataValue.float(round(table.select(pl.col("psi").max()).item() or 0.0, 6)),
        "warn_columns": MetadataValue.json(warned),
        "halt_columns": MetadataValue.json(halted),
        "psi_by_column": MetadataValue.md(to_markdown(table)),
    }
    # Evidently's report costs seconds a day; it is written for the days a person must look at.
    if quality_policy.drift_report_rows > 0 and (halted or warned):
        path = lake.report_path("drift", f"raw_transactions-{context.partition_key}.html")
        write_drift_report(
            raw_transactions,
            lake.baseline_sample(BASELINE, version),
            quality_policy.drift_report_rows,
            path,
        )
        metadata["evidently_report"] = MetadataValue.path(str(path))
        metadata["evidently_report_url"] = MetadataValue.url(path.as_uri())
    if halted:
        description = (
            f"Distribution moved past the halt threshold ({quality_policy.drift_halt}) in "
            f"{', '.join(halted)}. Fix the source, or accept a new baseline if the world moved. "
            f"{ACCEPT_BASELINE_HINT}"
        )
        return _verdict(context, alerter, False, AssetCheckSeverity.ERROR, description, metadata)
    description = (
        f"Drift recorded (warn) in {', '.join(warned)}."
        if warned
        else "Distributions match the accepted baseline."
    )
    return _verdict(context, alerter, not warned, AssetCheckSeverity.WARN, description, metadata)


@asset_check(
    asset=FRAUD_LABELS,
    name=LABELS_CONTRACT_CHECK,
    blocking=True,
    partitions_def=daily_partitions,
    description=(
        "pandera contract of the chargebacks feed: one label per transaction, reported on the "
        "day and after the transaction, with a known reason. Any failure halts (ERROR)."
    ),
)
def fraud_labels_contract(
    context: AssetCheckExecutionContext, fraud_labels: pl.DataFrame, alerter: Alerter
) -> AssetCheckResult:
    """Judge the day's labels: a wrong label teaches the model the wrong thing."""
    result = validate_chargebacks(fraud_labels, partition_day(context.partition_key))
    failures = result.bad_rows + result.schema_failures.height
    description = (
        f"{result.bad_rows} of {result.rows} labels break the contract"
        f"{' and the schema is broken' if result.schema_failures.height else ''}."
        if failures
        else f"All {result.rows} labels meet the contract."
    )
    metadata = {
        "rows": MetadataValue.int(result.rows),
        "bad_rows": MetadataValue.int(result.bad_rows),
        "failure_cases": MetadataValue.md(to_markdown(failure_summary(result))),
    }
    return _verdict(
        context, alerter, failures == 0, AssetCheckSeverity.ERROR, description, metadata
    )
