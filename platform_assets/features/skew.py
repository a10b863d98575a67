"""Training/serving skew: the feature values one entity gets from each store, compared.

Pure polars, free of Dagster and Feast, so the skew check and ``bench/features.py`` compare the
stores with the same rule: floats equal within a relative tolerance, nulls equal only nulls.
"""

import math

import polars as pl

# Floats read back from either store may differ in the last bits only.
SKEW_RELATIVE_TOLERANCE = 1e-9


def feature_mismatches(
    online: pl.DataFrame, offline: pl.DataFrame, features: list[str]
) -> pl.DataFrame:
    """Every (row, feature) whose online and offline values differ; nulls equal only nulls.

    Args:
        online: One row per entity row, in the order asked.
        offline: The same rows, in the same order.
        features: The columns to compare.
    """
    rows = []
    for feature in features:
        for row, (served, trained) in enumerate(
            zip(online[feature].to_list(), offline[feature].to_list(), strict=True)
        ):
            if not _same(served, trained):
                rows.append(
                    {
                        "feature": feature,
                        "customer_id": online["customer_id"][row],
                        "merchant_id": online["merchant_id"][row],
                        "online": str(served),
                        "offline": str(trained),
                    }
                )
    return pl.DataFrame(
        rows,
        schema={
            "feature": pl.String,
            "customer_id": pl.Int64,
            "merchant_id": pl.Int64,
            "online": pl.String,
            "offline": pl.String,
        },
    )


def _same(served: object, trained: object) -> bool:
    if isinstance(served, float) and isinstance(trained, float | int):
        return math.isclose(served, trained, rel_tol=SKEW_RELATIVE_TOLERANCE)
    return served == trained
