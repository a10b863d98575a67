"""A day of customer features in shards by customer, on the workers of a Dask cluster.

Why shards of polars rather than a Dask DataFrame: every customer feature is a window over that
customer's own payments, so customers split into disjoint shards (``customer_id`` modulo the
shard count) compute independently with the very code of one machine
(``engineering.customer_features_incremental``), each shard reading only its customers' rows of
the lake's files. The rows are one machine's (floats up to the order in which the month's sums
add up: a relative 4e-16 seen), and the per-customer sorts and
as-of logic stay polars' (a Dask DataFrame would need a shuffle by customer and a rewrite of
the windows). The inputs are lazy scans of the lake, which workers must see at the same paths
(a shared volume, as ``FLYWHEEL_LAKE_ROOT`` is in production).
"""

import datetime
from typing import TYPE_CHECKING

import polars as pl

from platform_assets.features import engineering
from resources.feature_store import TIMESTAMP

if TYPE_CHECKING:
    from distributed import Client


def customer_features_sharded(
    cluster: "Client",
    transactions: pl.LazyFrame,
    activity: pl.LazyFrame,
    day: datetime.date,
    shards: int,
) -> pl.DataFrame:
    """``engineering.customer_features_incremental`` in ``shards`` tasks on ``cluster``.

    Rows ordered by customer and time, as one machine orders them.
    """
    futures = [
        cluster.submit(_shard, transactions, activity, day, shard, shards, pure=False)
        for shard in range(shards)
    ]
    parts: list[pl.DataFrame] = cluster.gather(futures)  # type: ignore[assignment]
    return pl.concat(parts).sort("customer_id", TIMESTAMP, maintain_order=True)


def _shard(
    transactions: pl.LazyFrame,
    activity: pl.LazyFrame,
    day: datetime.date,
    shard: int,
    shards: int,
) -> pl.DataFrame:
    mine = pl.col("customer_id") % shards == shard
    return engineering.customer_features_incremental(
        transactions.filter(mine), activity.filter(mine), day
    )
