"""One way to describe a dataset in the UI: content-hash data version, row count, column schema.

Every asset that outputs a frame goes through ``dataset_output`` so that the catalog reads the
same everywhere and a re-run on identical content yields the identical data version.
"""

from typing import Any

import polars as pl
from dagster import DataVersion, MetadataValue, Output, TableColumn, TableSchema

# The data version is the hash the lake names kept versions by (a training set's file).
from resources.lake import content_hash

__all__ = ["column_schema", "content_hash", "dataset_output"]


def column_schema(frame: pl.DataFrame) -> TableSchema:
    """The frame's columns and polars types, as Dagster shows them in the catalog."""
    return TableSchema(
        columns=[TableColumn(name, str(dtype)) for name, dtype in frame.schema.items()]
    )


def dataset_output(
    frame: pl.DataFrame, output_name: str = "result", **metadata: Any
) -> Output[pl.DataFrame]:
    """Wrap a frame as an ``Output`` carrying its data version and readable metadata."""
    version = content_hash(frame)
    return Output(
        frame,
        output_name=output_name,
        data_version=DataVersion(version),
        metadata={
            "dagster/row_count": MetadataValue.int(frame.height),
            "dagster/column_schema": column_schema(frame),
            "content_hash": MetadataValue.text(version),
            **metadata,
        },
    )
