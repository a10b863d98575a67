"""The MLflow tracking store and model registry the fraud models live in.

Locally it is a SQLite database and an artifact folder inside the project's data folder; in
production a tracking server. Aliases, not stages, say which version does what: ``champion``
serves, ``previous_champion`` is the one a rollback returns to.

``mlflow_tracking_run`` is dagster-mlflow's ``mlflow_tracking`` resource, opened in this
registry's experiment: MLflow would otherwise create the experiment with its artifacts under
``./mlruns`` in whatever directory the run happens to start in. dagster-mlflow, and MLflow with
it, is imported only when the resource is built: every run process imports this code location
first, and MLflow alone costs it about two seconds that most runs never use.
"""

import datetime
import enum
from collections.abc import Callable, Iterator
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import TYPE_CHECKING, Any, Literal, cast

from dagster import (
    ConfigurableResource,
    EnvVar,
    InitResourceContext,
    Noneable,
    Permissive,
    StringSource,
    resource,
)
from dagster import Field as ConfigField
from pydantic import Field

if TYPE_CHECKING:
    import lightgbm as lgb
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.models import Model

LOCAL_MLFLOW_UI = "http://127.0.0.1:5000"  # make mlflow
CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous_champion"
CANARY = "canary"
# Version tags: when a version became the champion, and the threshold its gate set for decisions.
PROMOTED_AT_TAG = "flywheel.promoted_at"
THRESHOLD_TAG = "flywheel.operating_threshold"
OPERATING_PRECISION_TAG = "flywheel.operating_precision"
# Version tags of a canary release: its share of live traffic and when it started.
CANARY_SHARE_TAG = "flywheel.canary_share"
CANARY_STARTED_TAG = "flywheel.canary_started_at"
SQLITE_PREFIX = "sqlite:///"
# dagster-mlflow's config schema (``dagster_mlflow.resources.CONFIG_SCHEMA``), restated because
# that module imports MLflow; tests/test_import_cost.py holds the two equal.
MLFLOW_TRACKING_CONFIG = {
    "experiment_name": ConfigField(
        StringSource, is_required=True, description="MlFlow experiment name."
    ),
    "mlflow_tracking_uri": ConfigField(
        Noneable(StringSource),
        default_value=None,
        is_required=False,
        description="MlFlow tracking server uri.",
    ),
    "parent_run_id": ConfigField(
        Noneable(str),
        default_value=None,
        is_required=False,
        description="Mlflow run ID of parent run if this is a nested run.",
    ),
    "mlflow_run_id": ConfigField(
        Noneable(str),
        default_value=None,
        is_required=False,
        description="Mlflow run ID to use for this run.",
    ),
    "env": ConfigField(Permissive(), description="Environment variables for mlflow setup."),
    "env_to_tag": ConfigField(
        Noneable(list),
        default_value=None,
        is_required=False,
        description="List of environment variables to log as tags in mlflow.",
    ),
    "extra_tags": ConfigField(
        Permissive(), description="Any extra key-value tags to log to mlflow."
    ),
}


class ChampionMoved(RuntimeError):
    """A promotion refused: the champion is not the one its verdict was reached against."""


class _Unchecked(enum.Enum):
    ANY_CHAMPION = "any champion"


# ``promote``'s default: replace whichever version is champion (a person at a console, a test).
ANY_CHAMPION: Literal[_Unchecked.ANY_CHAMPION] = _Unchecked.ANY_CHAMPION


def _named(version: str | None) -> str:
    return "no champion" if version is None else f"champion v{version}"


class ModelRegistry(ConfigurableResource):
    """Where candidate models are tracked and registered, and which one is the champion.

    Attributes:
        tracking_uri: MLflow tracking and registry URI (``sqlite:///…`` or ``http://…``).
        artifact_location: Folder or URI for the experiment's artifacts; empty lets a tracking
            server decide.
        model_name: The registered model every candidate becomes a version of.
        experiment_name: The MLflow experiment training runs are logged to.
        mlflow_ui_url: Where people open MLflow's UI; links in Dagster's metadata point there.
            Empty: the tracking server itself when there is one (it serves the UI), else
            ``make mlflow``'s address.
        dagster_ui_url: Where people open Dagster's UI; MLflow runs link back there.
    """

    tracking_uri: str
    artifact_location: str = ""
    model_name: str = Field(default="fraud_model")
    experiment_name: str = Field(default="fraud_model")
    mlflow_ui_url: str = Field(default="")
    dagster_ui_url: str = Field(default="http://127.0.0.1:3000")

    def client(self) -> "MlflowClient":
        """A client bound to this store (the SQLite file's folder is created if needed)."""
        from mlflow import MlflowClient

        if self.tracking_uri.startswith(SQLITE_PREFIX):
            Path(self.tracking_uri.removeprefix(SQLITE_PREFIX)).parent.mkdir(
                parents=True, exist_ok=True
            )
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def ensure_experiment(self) -> str:
        """The experiment's id, creating it with this registry's artifact location if new."""
        client = self.client()
        experiment = client.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        return client.create_experiment(
            self.experiment_name, artifact_location=self.artifact_location or None
        )

    def version(self, version: str) -> "ModelVersion":
        """One registered version of the model."""
        return self.client().get_model_version(self.model_name, version)

    def aliased(self, alias: str) -> "ModelVersion | None":
        """The version ``alias`` points at; None if no version (or no model) carries it."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client().get_model_version_by_alias(self.model_name, alias)
        except MlflowException as error:
            if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    def champion(self) -> "ModelVersion | None":
        """The version serving now; None before the first promotion."""
        return self.aliased(CHAMPION)

    def champion_at(self, instant: datetime.datetime) -> "ModelVersion | None":
        """The version that held ``champion`` at ``instant``: the last promoted by then.

        Read from the promotion times ``production_model`` tags versions with; None when no
        version had been promoted by ``instant``.
        """
        promoted = [
            (datetime.datetime.fromisoformat(version.tags[PROMOTED_AT_TAG]), version)
            for version in self.client().search_model_versions(f"name='{self.model_name}'")
            if PROMOTED_AT_TAG in version.tags
        ]
        earlier = [(at, version) for at, version in promoted if at <= instant]
        return max(earlier, key=lambda pair: pair[0])[1] if earlier else None

    def run_artifact(self, version: "ModelVersion", path: str, folder: str) -> Path:
        """Download the file ``path`` logged to ``version``'s training run into ``folder``."""
        from mlflow.artifacts import download_artifacts

        return Path(
            download_artifacts(
                run_id=version.run_id,
                artifact_path=path,
                dst_path=folder,
                tracking_uri=self.tracking_uri,
            )
        )

    def load_booster(self, version: str) -> "lgb.Booster":
        """The LightGBM booster registered as ``version``."""
        import lightgbm as lgb

        with TemporaryDirectory() as folder:
            model = self._download(version, folder)
            data = self._logged_model(model).flavors["lightgbm"]["data"]
            return lgb.Booster(model_file=str(model / data))

    def model_info(self, version: str) -> "Model":
        """The logged model of ``version``: its signature, input example and flavors."""
        with TemporaryDirectory() as folder:
            return self._logged_model(self._download(version, folder))

    def _download(self, version: str, folder: str) -> Path:
        # Resolved through this registry's client, not a ``models:/`` URI: MLflow resolves those
        # through the process's global registry URI, which outside a Dagster run (the prediction
        # service) is MLflow's default, not this store.
        from mlflow.artifacts import download_artifacts

        location = self.client().get_model_version_download_uri(self.model_name, version)
        return Path(
            download_artifacts(
                artifact_uri=location, dst_path=folder, tracking_uri=self.tracking_uri
            )
        )

    @staticmethod
    def _logged_model(folder: Path) -> "Model":
        from mlflow.models import Model

        return Model.load(str(folder / "MLmodel"))

    def holdout_start(self, version: "ModelVersion") -> str | None:
        """Where the rows ``version`` never saw begin: its training run's ``holdout_start``.

        None for a version whose run did not record one (registered outside ``candidate_model``).
        """
        if not version.run_id:
            return None
        return self.client().get_run(version.run_id).data.params.get("holdout_start")

    def set_version_tags(self, version: str, tags: dict[str, str]) -> None:
        """Write ``tags`` onto a registered version."""
        client = self.client()
        for key, value in tags.items():
            client.set_model_version_tag(self.model_name, version, key, value)

    def promote(
        self,
        version: str,
        expected_champion: str | None | Literal[_Unchecked.ANY_CHAMPION] = ANY_CHAMPION,
    ) -> str | None:
        """Make ``version`` the champion; return the version it replaces (None if first).

        The replaced version keeps the ``previous_champion`` alias, so rolling back is moving
        ``champion`` to it.

        Args:
            version: The version to promote.
            expected_champion: Compare-and-set: the champion (None: no champion) the verdict to
                promote was reached against. If another version serves now, nothing moves and
                ``ChampionMoved`` names both. Left out, whatever serves is replaced.

        MLflow moves one alias per call and has no transactions, so the champion is read again
        after the move too: a promotion racing this one (outside ``production_model``'s pool,
        which runs promotions one at a time) is reported rather than silently overwritten.
        """
        client = self.client()
        current = self.champion()
        # MLflow returns versions as numbers here and takes them as strings.
        previous = None if current is None else str(current.version)
        if expected_champion is not ANY_CHAMPION and previous != expected_champion:
            raise self._moved(version, expected_champion, previous)
        if previous is not None and previous != str(version):
            client.set_registered_model_alias(self.model_name, PREVIOUS_CHAMPION, previous)
        client.set_registered_model_alias(self.model_name, CHAMPION, version)
        now = self.champion()
        if now is None or str(now.version) != str(version):
            raise ChampionMoved(
                f"{self.model_name} v{version}'s promotion raced another move of {CHAMPION}: it "
                f"is now {'unset' if now is None else f'v{now.version}'}. Check the aliases in "
                "MLflow before promoting again."
            )
        return previous

    def _moved(self, version: str, expected: str | None, current: str | None) -> ChampionMoved:
        return ChampionMoved(
            f"{self.model_name} v{version} not promoted: its verdict was reached against "
            f"{_named(expected)}, but the {CHAMPION} is now "
            f"{'unset' if current is None else f'v{current}'}. Judge v{version} against the "
            "new champion (rematerialize evaluation_report and the release) before promoting it."
        )

    def canary(self) -> "ModelVersion | None":
        """The version on canary release now; None when no release is under way."""
        return self.aliased(CANARY)

    def start_canary(self, version: str, share: float, started_at: datetime.datetime) -> None:
        """Send ``share`` of live traffic to ``version``: tag it, then point ``canary`` at it.

        The tags come first, so a server that sees the alias move also sees the share.
        """
        self.set_version_tags(
            version, {CANARY_SHARE_TAG: str(share), CANARY_STARTED_TAG: started_at.isoformat()}
        )
        self.client().set_registered_model_alias(self.model_name, CANARY, version)

    @staticmethod
    def release_of(version: "ModelVersion") -> str:
        """The id of ``version``'s canary release, which serving stamps on the release's rows."""
        return f"v{version.version}@{version.tags.get(CANARY_STARTED_TAG, '')}"

    def end_canary(self) -> None:
        """Remove the ``canary`` alias: every request goes to the champion again."""
        if self.canary() is not None:
            self.client().delete_registered_model_alias(self.model_name, CANARY)

    def rollback(self) -> str:
        """Move ``champion`` back to ``previous_champion``; return the version now serving."""
        previous = self.aliased(PREVIOUS_CHAMPION)
        if previous is None:
            raise LookupError(
                f"{self.model_name} has no '{PREVIOUS_CHAMPION}' alias: nothing to roll back to"
            )
        client = self.client()
        client.set_registered_model_alias(self.model_name, CHAMPION, previous.version)
        client.delete_registered_model_alias(self.model_name, PREVIOUS_CHAMPION)
        return str(previous.version)

    def ui_url(self) -> str:
        """Where MLflow's UI is: as configured, else the tracking server, else ``make mlflow``."""
        if self.mlflow_ui_url:
            return self.mlflow_ui_url
        if self.tracking_uri.startswith(("http://", "https://")):
            return self.tracking_uri.rstrip("/")
        return LOCAL_MLFLOW_UI

    def run_url(self, experiment_id: str, run_id: str) -> str:
        """The MLflow UI page of a run."""
        return f"{self.ui_url()}/#/experiments/{experiment_id}/runs/{run_id}"

    def version_url(self, version: str) -> str:
        """The MLflow UI page of a registered version."""
        return f"{self.ui_url()}/#/models/{self.model_name}/versions/{version}"

    def dagster_run_url(self, run_id: str) -> str:
        """The Dagster UI page of a run, for the link back from MLflow."""
        return f"{self.dagster_ui_url}/runs/{run_id}"


@resource(
    config_schema=MLFLOW_TRACKING_CONFIG,
    required_resource_keys={"model_registry"},
    description="dagster-mlflow's mlflow_tracking: one MLflow run for all steps of a Dagster "
    "run, in the model registry's experiment. Gives access to the mlflow module's functions and "
    "the tracking client's methods.",
)
def mlflow_tracking_run(context: InitResourceContext):
    """dagster-mlflow's run for this Dagster run, in the model registry's experiment."""
    from dagster_mlflow import mlflow_tracking

    context.resources.model_registry.ensure_experiment()
    # dagster-mlflow's resource function: a generator that opens the run and ends it on error.
    open_run = cast(Callable[[InitResourceContext], Iterator[Any]], mlflow_tracking.resource_fn)
    yield from open_run(context)


def model_registry_resources(registry: ModelRegistry) -> dict[str, Any]:
    """The registry and dagster-mlflow's run resource (key ``mlflow``), on the same store."""
    uri = registry.tracking_uri
    return {
        "model_registry": registry,
        "mlflow": mlflow_tracking_run.configured(
            {
                "experiment_name": registry.experiment_name,
                "mlflow_tracking_uri": {"env": uri.env_var_name}
                if isinstance(uri, EnvVar)
                else uri,
            }
        ),
    }
