"""Where models train: in the run's own process, or on a Dask cluster through ``lightgbm.dask``.

One machine trains the fraud model on a month of a million payments a day in about a minute;
past that, the same recipe runs data-parallel on Dask workers (``platform_assets/model/recipe.py``
says what changes: no early stopping inside a distributed fit, and no byte-identical promise).
The choice is configuration only: an empty ``scheduler_address`` trains in process, an address
(``tcp://scheduler:8786``, ``$FLYWHEEL_DASK_SCHEDULER_ADDRESS`` in ``prod``) on that cluster.
``distributed`` is imported only when a cluster is used.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from dagster import ConfigurableResource
from pydantic import Field

if TYPE_CHECKING:
    from distributed import Client


class DaskCluster(ConfigurableResource):
    """The Dask cluster LightGBM trains on; none (train in process) by default."""

    scheduler_address: str = Field(
        default="",
        description="Address of the Dask scheduler (tcp://host:8786). Empty: train in the run's "
        "own process, deterministic to the byte.",
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
