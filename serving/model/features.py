"""A payment's model inputs at request time: Feast's online store plus the on-demand features.

The stored features are read with Feast's online store API, the same store and the same feature
views as ``FeatureStore.get_online_features``, and the on-demand view is run by Feast's own
``transform_dict`` on the function in ``feature_repo/``: the code that built the training set.
What this skips is the generic request planning of ``get_online_features`` (several
milliseconds a call here, ``bench/serving.py``), done once when the reader is built.
"""

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from resources.feature_store import FeatureStoreResource

if TYPE_CHECKING:
    from feast import FeatureView, OnDemandFeatureView


class FeaturesNotReady(RuntimeError):
    """The feature store has not been applied yet: nothing can be scored."""


@dataclass(frozen=True)
class Payment:
    """What the caller knows about a payment: the entities and the on-demand view's request."""

    customer_id: int
    merchant_id: int
    amount: float
    country: str | None
    transaction_epoch_s: int


@dataclass(frozen=True)
class _StoredView:
    view: "FeatureView"
    key: str
    features: list[str]


class OnlineFeatureReader:
    """Reads the feature service's values for payments from the online store, in batches.

    The feature service is looked up on the first read, so the service can start before
    ``feature_store_registry`` has applied the repository (as on a fresh ``make dev``).
    """

    def __init__(self, feature_store: FeatureStoreResource):
        self.feature_store = feature_store
        self._stored: list[_StoredView] = []
        self._on_demand: list[OnDemandFeatureView] = []
        self._lock = threading.Lock()

    def _plan(self) -> None:
        """Resolve the service's views once: which to read and which to compute."""
        with self._lock:
            if self._stored:
                return
            store = self.feature_store.store()
            try:
                service = store.get_feature_service(self.feature_store.feature_service)
            except Exception as error:
                raise FeaturesNotReady(
                    f"feature service {self.feature_store.feature_service!r} is not in the Feast "
                    f"registry ({error}): materialize feature_store_registry"
                ) from error
            on_demand = {view.name: view for view in store.list_on_demand_feature_views()}
            for projection in service.feature_view_projections:
                if projection.name in on_demand:
                    self._on_demand.append(on_demand[projection.name])
                    continue
                view = store.get_feature_view(projection.name)
                (key,) = view.join_keys
                names = [feature.name for feature in projection.features]
                self._stored.append(_StoredView(view, key, names))
            self._store = store
            self._provider = store._get_provider()  # noqa: SLF001 (Feast's online read)

    def read(self, payments: Sequence[Payment]) -> tuple[dict[str, list[Any]], list[list[str]]]:
        """Every feature of the service for each payment, and the entity keys not found.

        An unknown customer or merchant (never seen, or silent beyond the view's TTL) gets
        empty features, which the model routes as missing values; its key is listed for the
        payment, so the answer can say it was scored on defaults.
        """
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value
        from feast.type_map import feast_value_type_to_python_type

        self._plan()
        columns: dict[str, list[Any]] = {
            "amount": [p.amount for p in payments],
            "country": [p.country for p in payments],
            "transaction_epoch_s": [p.transaction_epoch_s for p in payments],
        }
        unknown: list[list[str]] = [[] for _ in payments]
        for stored in self._stored:
            ids = [getattr(payment, stored.key) for payment in payments]
            keys = [
                EntityKey(join_keys=[stored.key], entity_values=[Value(int64_val=i)]) for i in ids
            ]
            found = self._provider.online_read(
                self._store.config, stored.view, keys, stored.features
            )
            for name in stored.features:
                columns[name] = [
                    None
                    if values is None or name not in values
                    else feast_value_type_to_python_type(values[name])
                    for _, values in found
                ]
            for position, (_, values) in enumerate(found):
                if values is None:
                    unknown[position].append(stored.key)
        for view in self._on_demand:
            columns.update(view.transform_dict(columns))
        return columns, unknown
