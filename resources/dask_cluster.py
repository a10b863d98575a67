"""The Dask cluster models train on, and days of customer features are computed on.

One machine trains the fraud model on a month of a million payments a day in about a minute,
and computes a 10M-payment day of customer features in under two minutes; past that, the same
code runs on Dask workers. LightGBM trains data-parallel through ``lightgbm.dask``
(``platform_assets/model/recipe.py`` says what changes: no early stopping inside a distributed
fit, and no byte-identical promise); a day of customer features splits into shards of customers
(``platform_assets/features/sharding.py``). The choice is configuration only: an empty
``scheduler_address`` keeps both in the run's process, an address (``tcp://scheduler:8786``,
``$FLYWHEEL_DASK_SCHEDULER_ADDRESS`` in ``prod``) trains there, and ``feature_shards`` above 0
computes features there too. ``distributed`` is imported only when a cluster is used.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from dagster import ConfigurableResource
from pydantic import Field

if TYPE_CHECKING:
    from distributed import Client


class DaskCluster(ConfigurableResource):
    """The Dask cluster LightGBM trains on and features shard on; none (in process) by default."""

    scheduler_address: str = Field(
        default="",
        description="Address of the Dask scheduler (tcp://host:8786). Empty: train in the run's "
        "own process, deterministic to the byte.",
    )
    feature_shards: int = Field(
        default=0,
        ge=0,
        description="Shards of customers a day of customer features is computed in on the "
        "cluster (a few per worker). 0: on the run's own machine; the lake must be a volume "
        "the workers share.",
    )
    connect_timeout_seconds: float = Field(
        default=30.0, gt=0, description="How long to wait for the scheduler before failing."
    )

    @property
    def engine(self) -> str:
        """What trains, for the MLflow run's tags and the asset's metadata."""
        return f"dask {self.scheduler_address}" if self.scheduler_address else "local"

    @contextmanager
    def client(self) -> "Iterator[Client | None]":
        """A client of the cluster, or None when training stays in process."""
        if not self.scheduler_address:
            yield None
            return
        from distributed import Client

        try:
            client = Client(self.scheduler_address, timeout=self.connect_timeout_seconds)
        except OSError as error:
            raise ConnectionError(
                f"DaskCluster.scheduler_address: no Dask scheduler answered at "
                f"{self.scheduler_address} within {self.connect_timeout_seconds:g} s ({error})"
            ) from error
        with client:
            if not client.scheduler_info()["workers"]:
                raise ConnectionError(
                    f"DaskCluster.scheduler_address: the scheduler at {self.scheduler_address} "
                    "has no workers"
                )
            yield client

    @contextmanager
    def feature_cluster(self) -> "Iterator[Client | None]":
        """A client when features are sharded on the cluster (``feature_shards``), else None."""
        if not self.feature_shards:
            yield None
            return
        if not self.scheduler_address:
            raise ValueError(
                f"DaskCluster.feature_shards is {self.feature_shards} but scheduler_address is "
                "empty: shards run on a Dask cluster; set its address or 0 shards"
            )
        with self.client() as client:
            yield client
