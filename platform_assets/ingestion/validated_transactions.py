"""The raw day split by the data contract into the rows downstream uses and the quarantine.

The split loses nothing: every raw row lands in exactly one of ``validated_transactions`` and
``quarantined_transactions``, and the counts in the metadata reconcile with the raw day.
"""

import polars as pl
from dagster import AssetExecutionContext, AssetOut, MetadataValue, multi_asset

from platform_assets.common.catalog import INGESTION, OWNERS
from platform_assets.common.datasets import dataset_output
from platform_assets.common.markdown import to_markdown
from platform_assets.common.partitions import daily_partitions, partition_day
from platform_assets.ingestion.contract import failure_summary, split_rows, validate_transactions


def _table(description: str) -> AssetOut:
    return AssetOut(
        description=description, owners=OWNERS, kinds={"polars", "parquet"}, code_version="1"
    )


@multi_asset(
    partitions_def=daily_partitions,
    group_name=INGESTION,
    outs={
        "validated_transactions": _table(
            "The day's transactions that passed the data contract: what every feature, "
            "training set and monitor downstream is built from."
        ),
        "quarantined_transactions": _table(
            "The day's rows that failed the contract, kept as delivered with their position "
            "in the batch (source_row) and the rules they broke (failed_rules)."
        ),
    },
)
def split_transactions(context: AssetExecutionContext, raw_transactions: pl.DataFrame):
    """Split the raw day by the contract; the counts reconcile exactly with the raw rows."""
    day = partition_day(context.partition_key)
    result = validate_transactions(raw_transactions, day)
    valid, quarantined = split_rows(raw_transactions, result)
    reconciliation = {
        "raw_rows": MetadataValue.int(raw_transactions.height),
        "validated_rows": MetadataValue.int(valid.height),
        "quarantined_rows": MetadataValue.int(quarantined.height),
    }
    yield dataset_output(valid, output_name="validated_transactions", **reconciliation)
    yield dataset_output(
        quarantined,
        output_name="quarantined_transactions",
        failures=MetadataValue.md(to_markdown(failure_summary(result))),
        **reconciliation,
    )
