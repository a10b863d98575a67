"""The Feast feature store as a Dagster resource: apply, materialize, retrieve.

Dagster drives Feast through its Python API, on the repository in ``feature_repo/``, which stays a
plain Feast repository (``feast -c feature_repo plan`` and ``apply`` keep working). The resource
adds what a shared code location needs: the store's files follow the data folder it is given, so
tests and ``make dev`` each get their own registry and online store; and the definitions are
read fresh on every apply with the lake the resource points at.

Feast is imported inside the methods: importing it costs seconds, and ``dagster dev`` imports
this module on every reload of the code location.
"""

import contextlib
import datetime
import hashlib
import io
import os
import re
import runpy
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import polars as pl
import yaml
from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore
    from feast.repo_config import RepoConfig
    from feast.repo_contents import RepoContents

FEATURE_REPO = Path(__file__).resolve().parents[1] / "feature_repo"
# The variable the definitions in feature_repo/ read their lake from.
LAKE_ROOT_VARIABLE = "FLYWHEEL_LAKE_ROOT"
# Files whose content defines the features; their hash is the registry asset's code version.
DEFINITION_PATTERNS = ("*.py", "*.yaml", ".feastignore")
TIMESTAMP = "event_timestamp"
_ROW = "__entity_row"
_FEATURE_TIME = "__feature_timestamp"
Engine = Literal["feast", "polars"]
# Feast colours its apply report for a terminal; the UI shows it as plain text.
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def definitions_version(repo_path: str | Path = FEATURE_REPO) -> str:
    """A short hash of every definition file in the repository, path and content.

    It changes with any edit of a view, source, service or store configuration, and only then.
    """
    root = Path(repo_path)
    files = sorted({path for pattern in DEFINITION_PATTERNS for path in root.glob(pattern)})
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class FeatureStoreResource(ConfigurableResource):
    """Flywheel's Feast repository, bound to one lake and one registry and online store.

    Attributes:
        repo_path: The Feast repository (``feature_repo/``).
        config_file: Which store configuration of the repository to use.
        lake_root: Where the feature assets write the views' parquet sources.
        state_dir: Local only: the folder for the file registry and the SQLite online store,
            replacing the configuration's default under ``.flywheel/data``. Leave empty to keep
            the configuration's (in production: the SQL registry and Redis).
        feature_service: The service that defines the model's features.
    """

    repo_path: str = Field(default=str(FEATURE_REPO), description="The Feast repository.")
    config_file: str = Field(
        default="feature_store.yaml",
        description="Store configuration in the repository (feature_store.prod.yaml in prod).",
    )
    lake_root: str = Field(description="Lake folder holding the feature views' parquet sources.")
    state_dir: str | None = Field(
        default=None, description="Local folder for the registry and SQLite online store."
    )
    feature_service: str = Field(
        default="fraud_model_v2", description="The feature service the model uses."
    )
    _store: Any = PrivateAttr(default=None)

    def repo_config(self) -> "RepoConfig":
        """The store configuration, environment variables expanded, paths moved to state_dir."""
        from feast.repo_config import RepoConfig

        text = Path(self.repo_path, self.config_file).read_text(encoding="utf-8")
        raw = yaml.safe_load(os.path.expandvars(text))
        if self.state_dir:
            state = Path(self.state_dir)
            state.mkdir(parents=True, exist_ok=True)
            raw["registry"] = {**raw["registry"], "path": str(state / "registry.db")}
            raw["online_store"] = {**raw["online_store"], "path": str(state / "online_store.db")}
        config = RepoConfig(**raw)
        config.repo_path = Path(self.repo_path)
        return config

    def store(self) -> "FeatureStore":
        """The Feast ``FeatureStore``, built once per resource instance."""
        if self._store is None:
            from feast import FeatureStore

            self._store = FeatureStore(config=self.repo_config())
        return self._store

    def definitions(self) -> "RepoContents":
        """Every Feast object the repository defines, read fresh against this lake.

        Feast's own ``parse_repo`` imports the files as modules, which Python caches; reading
        each file anew means a changed definition (or another lake) is always what gets applied.
        """
        from feast import Entity, FeatureService, FeatureView, OnDemandFeatureView, Project
        from feast.data_source import DataSource
        from feast.repo_contents import RepoContents
        from feast.repo_operations import get_repo_files

        kinds = (DataSource, Entity, FeatureView, OnDemandFeatureView, FeatureService, Project)
        found: dict[type, list[Any]] = {kind: [] for kind in kinds}
        with _environment({LAKE_ROOT_VARIABLE: self.lake_root}):
            for path in get_repo_files(Path(self.repo_path)):
                for value in runpy.run_path(str(path)).values():
                    for kind, objects in found.items():
                        if isinstance(value, kind) and not any(value is o for o in objects):
                            objects.append(value)
        # As `feast apply` does: without a Project object, the configuration's project is used.
        return RepoContents(
            projects=found[Project] or [Project(name=self.store().project)],
            data_sources=found[DataSource],
            feature_views=found[FeatureView],
            on_demand_feature_views=found[OnDemandFeatureView],
            stream_feature_views=[],
            label_views=[],
            entities=found[Entity],
            feature_services=found[FeatureService],
            permissions=[],
        )

    def apply(self) -> str:
        """Apply the repository exactly as ``feast apply`` does; return Feast's report of it."""
        from feast.repo_operations import apply_total_with_repo_instance

        store = self.store()
        report = io.StringIO()
        with contextlib.redirect_stdout(report):
            apply_total_with_repo_instance(
                store, store.project, store.registry, self.definitions(), False
            )
        return _ANSI_ESCAPE.sub("", report.getvalue())

    def service(self) -> "FeatureService":
        """The model's feature service, as applied."""
        return self.store().get_feature_service(self.feature_service)

    def feature_names(self) -> list[str]:
        """The service's feature columns, in order, as retrieval returns them."""
        return [
            feature.name
            for projection in self.service().feature_view_projections
            for feature in projection.features
        ]

    def applied_views_version(self) -> str:
        """A short hash of the feature views as applied (their specs, not their load history)."""
        digest = hashlib.sha256()
        for view in sorted(self.store().list_feature_views(), key=lambda view: view.name):
            digest.update(view.to_proto().spec.SerializeToString(deterministic=True))
        return digest.hexdigest()[:16]

    def materialize(
        self, end: datetime.datetime, reload: bool = False
    ) -> dict[str, tuple[datetime.datetime, ...]]:
        """Load every view's rows newer than its last materialization, up to ``end``.

        This is ``materialize_incremental`` with the platform's clock: Feast's own starts a
        never-materialized view at the wall clock minus its TTL, which misses every row of a
        simulated or replayed past. With ``reload``, every view starts over from ``end`` minus
        its TTL, overwriting what the online store holds.

        Returns:
            Each view's materialized interval (start, end), or () when it was already current.
        """
        store = self.store()
        views = store.list_feature_views()
        if not views:
            raise LookupError(
                f"the Feast registry of project {store.project!r} has no feature views: "
                "materialize feature_store_registry (feast apply) first"
            )
        intervals: dict[str, tuple[datetime.datetime, ...]] = {}
        for view in views:
            since = None if reload else view.most_recent_end_time
            start = since or end - (view.ttl or datetime.timedelta(0))
            if start >= end:
                intervals[view.name] = ()
                continue
            store.materialize(start_date=start, end_date=end, feature_views=[view.name])
            intervals[view.name] = (start, end)
        return intervals

    def historical_features(self, entities: pl.DataFrame, engine: Engine = "feast") -> pl.DataFrame:
        """The service's features for each entity row, as of its ``event_timestamp``.

        Both engines give the same frame, row for row: the entity columns as given, then the
        service's features in order, typed as the views declare them.

        Args:
            entities: ``customer_id``, ``merchant_id``, ``event_timestamp`` (UTC, microseconds)
                and the request fields of the on-demand view; other columns pass through.
            engine: ``feast`` is Feast's ``get_historical_features`` (the DuckDB offline
                store). ``polars`` is our as-of join over the same parquet sources with Feast's
                rules, the on-demand view run by Feast itself: Feast's DuckDB join first pairs
                each row with every feature row inside the TTL, which for a million training
                rows needs tens of GB; the as-of join needs seconds (``bench/features.py``
                compares the two).
        """
        numbered = entities.with_row_index(_ROW)
        if engine == "feast":
            job = self.store().get_historical_features(
                entity_df=numbered.to_pandas(), features=self.service()
            )
            joined = pl.from_arrow(job.to_arrow())
        else:
            joined = self._as_of_join(numbered)
        assert isinstance(joined, pl.DataFrame)
        return (
            joined.sort(_ROW)
            .select(*entities.columns, *self.feature_names())
            .cast(self._feature_types())
        )

    def _as_of_join(self, entities: pl.DataFrame) -> pl.DataFrame:
        """Feast's point-in-time rules as polars as-of joins, one per feature view.

        Per view: the latest row at or before the entity row's timestamp and no older than
        the view's TTL (both ends inclusive, as Feast's offline stores do). Then each on-demand
        view transforms the joined table with Feast's own code.
        """
        from feast.infra.offline_stores.file_source import FileSource

        store = self.store()
        on_demand = {view.name: view for view in store.list_on_demand_feature_views()}
        rows = entities.sort(TIMESTAMP)
        first, last = rows[TIMESTAMP].min(), rows[TIMESTAMP].max()
        for projection in self.service().feature_view_projections:
            if projection.name in on_demand:
                continue
            view = store.get_feature_view(projection.name)
            source = view.batch_source
            if not isinstance(source, FileSource):
                raise TypeError(f"{view.name}: the polars engine reads parquet FileSources only")
            ttl = view.ttl or datetime.timedelta(0)
            (key,) = view.join_keys
            columns = [feature.name for feature in projection.features]
            features = (
                pl.scan_parquet(source.path)
                .select(key, source.timestamp_field, *columns)
                .rename({source.timestamp_field: _FEATURE_TIME})
                .filter(pl.col(_FEATURE_TIME).is_between(first - ttl, last))  # type: ignore[operator]
                .join(rows.lazy().select(key).unique(), on=key, how="semi")
                .sort(_FEATURE_TIME)
                .collect()
            )
            # Both sides are sorted by time as a whole, hence within every key; polars cannot
            # verify that per key and would warn on every call.
            rows = rows.join_asof(
                features,
                left_on=TIMESTAMP,
                right_on=_FEATURE_TIME,
                by=key,
                strategy="backward",
                tolerance=ttl if view.ttl else None,
                check_sortedness=False,
            ).drop(_FEATURE_TIME)
        for projection in self.service().feature_view_projections:
            if projection.name in on_demand:
                transformed = on_demand[projection.name].transform_arrow(rows.to_arrow())
                rows = rows.hstack(pl.DataFrame(pl.from_arrow(transformed)))
        return rows

    def _feature_types(self) -> pl.Schema:
        """The polars type of each feature of the service, from the views' schemas."""
        types = {"Int64": pl.Int64(), "Float64": pl.Float64(), "String": pl.String()}
        return pl.Schema(
            {
                feature.name: types[str(feature.dtype)]
                for projection in self.service().feature_view_projections
                for feature in projection.features
            }
        )

    def online_features(self, rows: Sequence[dict[str, Any]]) -> pl.DataFrame:
        """The service's latest features for each row of entity keys and request fields."""
        response = self.store().get_online_features(features=self.service(), entity_rows=list(rows))
        return pl.DataFrame(response.to_dict())


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a block, then restore them."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
