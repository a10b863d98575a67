"""Which models serve: the registry's ``champion`` and ``canary`` aliases, loaded and kept fresh.

A watcher thread reads the aliases every few seconds (and on ``/admin/reload``). A moved alias
is loaded beside the serving models and then swapped in as one immutable ``Deployment``, so a
request in flight finishes on the models it started with. A version that fails to load changes
nothing that serves: the error is kept for ``/healthz`` and sent once through the alerter.
"""

import logging
import math
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from resources.alerting import Alerter
from resources.model_registry import (
    CANARY,
    CANARY_SHARE_TAG,
    CHAMPION,
    THRESHOLD_TAG,
    ModelRegistry,
)

if TYPE_CHECKING:
    import lightgbm as lgb
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)
# The most live traffic a canary may get, whatever its release says.
MAX_CANARY_SHARE = 0.10


@dataclass(frozen=True)
class LoadedModel:
    """A registered version ready to score: its booster, inputs and operating threshold."""

    version: str
    booster: "lgb.Booster"
    features: list[str]
    threshold: float


@dataclass(frozen=True)
class Deployment:
    """What serves right now; replaced whole, never changed in place."""

    champion: LoadedModel | None = None
    canary: LoadedModel | None = None
    canary_share: float = 0.0
    release: str | None = None  # the canary release's id, stamped on its rows in the log


@dataclass
class DeploymentWatcher:
    """Keeps ``deployment`` in step with the registry's aliases.

    Attributes:
        registry: The MLflow registry whose aliases say what serves.
        alerter: Where a version that cannot load is reported.
        poll_seconds: How often the aliases are read.
    """

    registry: ModelRegistry
    alerter: Alerter
    poll_seconds: float = 5.0
    deployment: Deployment = field(default_factory=Deployment)
    # Versions that could not be loaded, with why; cleared when a version loads.
    load_errors: dict[str, str] = field(default_factory=dict)
    _loaded: dict[str, LoadedModel] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        """Load what the aliases name now, then follow them in a background thread."""
        self.refresh()
        self._thread = threading.Thread(target=self._follow, name="deployment-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following the aliases."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def refresh(self) -> Deployment:
        """Read both aliases and swap in what they name; keep what serves where loading fails."""
        with self._lock:
            current = self.deployment
            champion = self._model(self.registry.aliased(CHAMPION), current.champion)
            canary, share, release = None, 0.0, None
            canary_version = self.registry.aliased(CANARY)
            if canary_version is not None:
                share = self._share(canary_version)
                canary = self._model(canary_version, None) if share > 0 else None
                release = self.registry.release_of(canary_version) if canary else None
            self.deployment = Deployment(champion, canary, share if canary else 0.0, release)
            return self.deployment

    def _follow(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception as error:  # the registry is down: keep serving what is loaded
                log.warning("could not read the model registry's aliases: %s", error)

    def _model(
        self, version: "ModelVersion | None", keep: LoadedModel | None
    ) -> LoadedModel | None:
        """The loaded model of ``version``; ``keep`` when there is none or it cannot load."""
        if version is None:
            return keep
        name = str(version.version)
        if name in self._loaded:
            return self._loaded[name]
        try:
            model = self._load(version)
        except Exception as error:
            self._report(name, error)
            return keep
        self.load_errors.pop(name, None)
        # Only the serving models stay in memory (plus the one just loaded).
        serving = {m.version for m in (self.deployment.champion, self.deployment.canary) if m}
        self._loaded = {v: m for v, m in self._loaded.items() if v in serving}
        self._loaded[name] = model
        return model

    def _load(self, version: "ModelVersion") -> LoadedModel:
        name = str(version.version)
        if THRESHOLD_TAG not in version.tags:
            raise ValueError(
                f"v{name} has no {THRESHOLD_TAG} tag: it was never evaluated by the gate"
            )
        booster = self.registry.load_booster(name)
        return LoadedModel(
            version=name,
            booster=booster,
            features=booster.feature_name(),
            threshold=float(version.tags[THRESHOLD_TAG]),
        )

    def _share(self, version: "ModelVersion") -> float:
        try:
            share = float(version.tags.get(CANARY_SHARE_TAG, "nan"))
        except ValueError:
            share = math.nan
        if not 0 <= share <= MAX_CANARY_SHARE:
            self._report(
                str(version.version),
                ValueError(
                    f"{CANARY_SHARE_TAG}={version.tags.get(CANARY_SHARE_TAG)!r} must be a share "
                    f"between 0 and {MAX_CANARY_SHARE}"
                ),
            )
            return 0.0
        return share

    def _report(self, version: str, error: Exception) -> None:
        message = f"{type(error).__name__}: {error}"
        if self.load_errors.get(version) == message:
            return
        self.load_errors[version] = message
        log.error("model version %s cannot serve: %s", version, message)
        self.alerter.send(
            title=f"{self.registry.model_name} v{version} cannot be loaded for serving",
            message=f"{message}; the models that served before keep serving",
            severity="error",
            asset="prediction_service",
            version=version,
        )
