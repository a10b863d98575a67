"""The production manifests in serving/deploy/ are valid and say what the platform relies on.

The Kubernetes documents are validated against the API schema of Kubernetes ``K8S_VERSION``
(kubernetes-validate, strict: an unknown or misspelt field is an error), and their probes are
played against the real FastAPI app. Dagster's Helm chart is not installable here, so the values
are rendered into the ``dagster.yaml`` the chart writes (the chart's
``templates/helpers/instance/*.tpl``, mirrored by ``render_instance``) and validated by Dagster's
own instance schema and by each configured class's config schema (dagster_k8s, dagster_postgres).
"""

import importlib.util
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import kubernetes_validate
import pytest
import yaml
from dagster import EnvVar
from dagster._config import process_config, resolve_to_config_type
from dagster._core.instance.config import dagster_instance_config
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._serdes.config_class import ConfigurableClassData
from dagster_k8s import K8sRunLauncher, k8s_job_executor
from fastapi.testclient import TestClient

from resources.environments import ENV_VARIABLE, ENVIRONMENTS, build_resources
from serving.model.app import create_app
from serving.model.deployment import Deployment, DeploymentWatcher, LoadedModel
from serving.model.log_writer import PredictionLogWriter
from serving.model.predictor import Predictor

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "serving/deploy/kubernetes/prediction-service.yaml"
HELM_VALUES = ROOT / "serving/deploy/helm/dagster-values.yaml"
K8S_VERSION = "1.34.0"
SECRET = "flywheel-secrets"
# An env var whose name says it holds a location or a credential comes from the Secret.
SECRET_NAME_MARKERS = ("URL", "URI", "KEY", "PASSWORD", "SECRET", "TOKEN", "CONNECTION")
# The resources serving.model.app.main() initializes.
SERVING_RESOURCES = ("model_registry", "feature_store", "prediction_log", "alerter")
# `helm install dagster dagster/dagster`: the chart's fullname is then "dagster".
RELEASE, NAMESPACE, DAGSTER_HOME = "dagster", "flywheel", "/opt/dagster/dagster_home"


def load_documents() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")) if doc]


@pytest.fixture(scope="module")
def manifest() -> dict[str, dict[str, Any]]:
    documents = load_documents()
    kinds = [doc["kind"] for doc in documents]
    assert len(set(kinds)) == len(kinds), f"one document per kind expected: {kinds}"
    return {doc["kind"]: doc for doc in documents}


@pytest.fixture(scope="module")
def container(manifest: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (container,) = manifest["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return yaml.safe_load(HELM_VALUES.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# Kubernetes: the prediction service
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("document", load_documents(), ids=lambda doc: doc["kind"])
def test_document_is_valid_kubernetes(document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_manifest_has_the_workload_its_service_and_autoscaler(
    manifest: dict[str, dict[str, Any]],
) -> None:
    assert {"Deployment", "Service", "HorizontalPodAutoscaler"} <= manifest.keys()
    assert manifest["Deployment"]["spec"]["replicas"] >= 2


def test_container_runs_the_prediction_service_on_its_port(container: dict[str, Any]) -> None:
    command = container["command"] + container["args"]
    module = command[command.index("-m") + 1]
    assert module == "serving.model.app"
    assert importlib.util.find_spec(module) is not None
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert int(command[command.index("--port") + 1]) == ports["http"]
    assert command[command.index("--host") + 1] == "0.0.0.0"  # reachable from the kubelet


def _app(champion: bool) -> TestClient:
    """The service's real routes over a watcher that has (or has not) loaded a champion."""
    watcher = DeploymentWatcher(registry=cast(Any, None), alerter=cast(Any, None))
    if champion:
        model = LoadedModel("3", booster=cast(Any, None), features=[], threshold=0.5)
        watcher.deployment = Deployment(champion=model)
    predictor = Predictor(cast(Any, None), lambda: watcher.deployment, "fraud_model")
    # Never started: no thread, nothing written.
    writer = PredictionLogWriter(cast(Any, None))
    return TestClient(create_app(predictor, watcher, writer, admin_token=None))


def _probe_status(client: TestClient, probe: dict[str, Any], ports: dict[str, int]) -> int:
    get = probe["httpGet"]
    assert get["port"] in ports or get["port"] in ports.values(), f"unknown port {get['port']}"
    return client.get(get["path"]).status_code


def test_readiness_succeeds_only_once_a_model_is_loaded(container: dict[str, Any]) -> None:
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    readiness = container["readinessProbe"]
    assert _probe_status(_app(champion=False), readiness, ports) == 503
    assert _probe_status(_app(champion=True), readiness, ports) == 200


def test_liveness_and_startup_do_not_wait_for_a_model(container: dict[str, Any]) -> None:
    """A pod waiting for its first champion must not be restarted for it."""
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    without_model = _app(champion=False)
    for probe in ("livenessProbe", "startupProbe"):
        assert _probe_status(without_model, container[probe], ports) == 200, probe
    assert container["livenessProbe"]["httpGet"] != container["readinessProbe"]["httpGet"]


def test_autoscaler_scales_the_deployment_on_cpu(
    manifest: dict[str, dict[str, Any]], container: dict[str, Any]
) -> None:
    deployment, hpa = manifest["Deployment"], manifest["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"]) == (deployment["apiVersion"], "Deployment")
    assert target["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["maxReplicas"] >= hpa["spec"]["minReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    # Utilization is measured against the request: without one the HPA cannot scale.
    assert container["resources"]["requests"]["cpu"]
    assert container["resources"]["limits"]["memory"]


def test_service_selects_the_deployments_pods(manifest: dict[str, dict[str, Any]]) -> None:
    deployment, service = manifest["Deployment"], manifest["Service"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = service["spec"]["selector"]
    assert selector and selector.items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    ports = {
        p["name"] for c in deployment["spec"]["template"]["spec"]["containers"] for p in c["ports"]
    }
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= ports
    budget = manifest.get("PodDisruptionBudget")
    if budget:
        assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in container.get("env", [])}


def test_secrets_come_from_the_secret_never_from_the_manifest(
    manifest: dict[str, dict[str, Any]],
) -> None:
    pod = manifest["Deployment"]["spec"]["template"]["spec"]
    for container in pod["containers"] + pod.get("initContainers", []):
        for name, variable in _env(container).items():
            if any(marker in name for marker in SECRET_NAME_MARKERS):
                assert "value" not in variable, f"{name} has a literal value"
                reference = variable["valueFrom"]["secretKeyRef"]
                assert reference["name"] == SECRET, name


def _serving_variables() -> set[str]:
    """Environment variables the service's prod resources read (dagster.EnvVar, Feast's ${})."""
    resources = build_resources("prod")
    names = set()
    for key in SERVING_RESOURCES:
        names |= {v.env_var_name for v in vars(resources[key]).values() if isinstance(v, EnvVar)}
    store = resources["feature_store"]
    config = yaml.safe_load(Path(store.repo_path, store.config_file).read_text(encoding="utf-8"))
    return names | {name for text in _strings(config) for name in re.findall(r"\$\{(\w+)\}", text)}


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for child in node.values():
            yield from _strings(child)
    elif isinstance(node, list):
        for child in node:
            yield from _strings(child)


def test_every_variable_the_prod_resources_read_is_set(container: dict[str, Any]) -> None:
    env = _env(container)
    assert env[ENV_VARIABLE]["value"] == "prod"
    needed = _serving_variables()
    assert {"FLYWHEEL_MLFLOW_TRACKING_URI", "FLYWHEEL_REDIS_CONNECTION"} <= needed
    assert needed <= env.keys(), f"not set: {sorted(needed - env.keys())}"


def test_pod_runs_unprivileged(manifest: dict[str, dict[str, Any]], container: dict[str, Any]):
    pod = manifest["Deployment"]["spec"]["template"]["spec"]
    security = {**pod.get("securityContext", {}), **container["securityContext"]}
    assert security["runAsNonRoot"] is True
    assert security.get("runAsUser", 1) != 0
    assert security["allowPrivilegeEscalation"] is False
    assert "ALL" in security["capabilities"]["drop"]
    if security.get("readOnlyRootFilesystem"):
        # The model artifacts are downloaded to a temporary directory.
        assert "/tmp" in {mount["mountPath"] for mount in container["volumeMounts"]}


# ---------------------------------------------------------------------------------------------
# Helm: Dagster's chart with the Flywheel code location
# ---------------------------------------------------------------------------------------------

# The chart's value keys of runLauncher.config.k8sRunLauncher and of
# dagsterDaemon.runCoordinator.config.queuedRunCoordinator (helm/dagster/schema, extra=forbid).
K8S_RUN_LAUNCHER_KEYS = {
    "image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile",
    "envConfigMaps", "envSecrets", "envVars", "volumeMounts", "volumes", "labels",
    "failPodOnRunFailure", "resources", "schedulerName", "securityContext", "runK8sConfig",
}  # fmt: skip
QUEUED_RUN_COORDINATOR_KEYS = {
    "maxConcurrentRuns", "tagConcurrencyLimits", "dequeueIntervalSeconds", "dequeueNumWorkers",
    "dequeueUseThreads", "blockOpConcurrencyLimitedRuns",
}  # fmt: skip


def _postgres_config(values: dict[str, Any]) -> dict[str, Any]:
    """templates/helpers/instance/_postgresql.tpl (postgresql.enabled: false)."""
    pg = values["postgresql"]
    db = {
        "username": pg["postgresqlUsername"],
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": pg["postgresqlHost"],
        "db_name": pg["postgresqlDatabase"],
        "port": pg["service"]["port"],
        "params": pg.get("postgresqlParams", {}),
    }
    if pg.get("postgresqlScheme"):
        db["scheme"] = pg["postgresqlScheme"]
    return {"postgres_db": db}


def _k8s_run_launcher_config(values: dict[str, Any]) -> dict[str, Any]:
    """templates/helpers/instance/_run-launcher.tpl, "dagsterYaml.runLauncher.k8s"."""
    k8s = values["runLauncher"]["config"]["k8sRunLauncher"]
    unknown = k8s.keys() - K8S_RUN_LAUNCHER_KEYS
    assert not unknown, f"not keys of the chart's k8sRunLauncher: {sorted(unknown)}"
    config: dict[str, Any] = {
        "load_incluster_config": k8s["loadInclusterConfig"],
        "job_namespace": k8s.get("jobNamespace") or NAMESPACE,
        "image_pull_policy": k8s["imagePullPolicy"],
        "service_account_name": values.get("global", {}).get("serviceAccountName") or RELEASE,
        "dagster_home": values.get("global", {}).get("dagsterHome") or DAGSTER_HOME,
        "instance_config_map": f"{RELEASE}-instance",
        "postgres_password_secret": values["global"]["postgresqlSecretName"],
    }
    if k8s.get("kubeconfigFile"):
        config["kubeconfig_file"] = k8s["kubeconfigFile"]
    if "image" in k8s:
        config["job_image"] = f"{k8s['image']['repository']}:{k8s['image']['tag']}"
    for key, field in (("envConfigMaps", "env_config_maps"), ("envSecrets", "env_secrets")):
        if k8s.get(key):
            config[field] = [source["name"] for source in k8s[key] if "name" in source]
    for key, field in (
        ("envVars", "env_vars"),
        ("volumeMounts", "volume_mounts"),
        ("volumes", "volumes"),
        ("labels", "labels"),
        ("resources", "resources"),
        ("schedulerName", "scheduler_name"),
        ("securityContext", "security_context"),
    ):
        if k8s.get(key):
            config[field] = k8s[key]
    if k8s.get("failPodOnRunFailure"):
        config["fail_pod_on_run_failure"] = True
    if k8s.get("runK8sConfig"):
        run = k8s["runK8sConfig"]
        names = (
            "containerConfig",
            "podSpecConfig",
            "podTemplateSpecMetadata",
            "jobSpecConfig",
            "jobMetadata",
        )
        config["run_k8s_config"] = {
            re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower(): run[name]
            for name in names
            if run.get(name)
        }
    return config


def _queued_run_coordinator(values: dict[str, Any]) -> dict[str, Any]:
    """templates/helpers/instance/_run-coordinator.tpl, "dagsterYaml.runCoordinator.queued"."""
    queued = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    unknown = queued.keys() - QUEUED_RUN_COORDINATOR_KEYS
    assert not unknown, f"not keys of the chart's queuedRunCoordinator: {sorted(unknown)}"
    section: dict[str, Any] = {
        "module": "dagster.core.run_coordinator",
        "class": "QueuedRunCoordinator",
    }
    if any(value is not None for value in queued.values()):
        max_runs = queued.get("maxConcurrentRuns")
        config: dict[str, Any] = {"max_concurrent_runs": -1 if max_runs is None else max_runs}
        for key, field in (
            ("tagConcurrencyLimits", "tag_concurrency_limits"),
            ("dequeueIntervalSeconds", "dequeue_interval_seconds"),
            ("dequeueUseThreads", "dequeue_use_threads"),
            ("dequeueNumWorkers", "dequeue_num_workers"),
        ):
            if queued.get(key):
                config[field] = queued[key]
        if blocking := queued.get("blockOpConcurrencyLimitedRuns"):
            config["block_op_concurrency_limited_runs"] = {
                "enabled": blocking["enabled"],
                "op_concurrency_slot_buffer": blocking["opConcurrencySlotBuffer"],
            }
        section["config"] = config
    return section


def render_instance(values: dict[str, Any]) -> dict[str, Any]:
    """The dagster.yaml of the chart's configmap-instance.yaml for these values (the parts set).

    Only what Flywheel's values choose is rendered; another choice (a Celery launcher, a
    compute-log manager that uploads) fails here rather than being rendered wrongly.
    """
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["scheduler"]["type"] == "DagsterDaemonScheduler"
    assert values["computeLogManager"]["type"] == "NoOpComputeLogManager"
    daemon = values["dagsterDaemon"]
    assert daemon["enabled"] and daemon["runCoordinator"]["enabled"]
    assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    postgres = _postgres_config(values)
    return {
        "scheduler": {"module": "dagster.core.scheduler", "class": "DagsterDaemonScheduler"},
        "schedule_storage": {
            "module": "dagster_postgres.schedule_storage",
            "class": "PostgresScheduleStorage",
            "config": postgres,
        },
        "run_launcher": {
            "module": "dagster_k8s",
            "class": "K8sRunLauncher",
            "config": _k8s_run_launcher_config(values),
        },
        "run_storage": {
            "module": "dagster_postgres.run_storage",
            "class": "PostgresRunStorage",
            "config": postgres,
        },
        "event_log_storage": {
            "module": "dagster_postgres.event_log",
            "class": "PostgresEventLogStorage",
            "config": postgres,
        },
        "run_coordinator": _queued_run_coordinator(values),
        "compute_logs": {
            "module": "dagster.core.storage.noop_compute_log_manager",
            "class": "NoOpComputeLogManager",
        },
        "telemetry": {"enabled": values["telemetry"]["enabled"]},
    }


def _configured_classes(instance: dict[str, Any]) -> Iterator[tuple[str, type, dict[str, Any]]]:
    for section, entry in instance.items():
        if isinstance(entry, dict) and "module" in entry:
            # As Dagster loads it: `dagster.core.*` (the chart's spelling) is `dagster._core.*`.
            data = ConfigurableClassData(entry["module"], entry["class"], yaml.safe_dump({}))
            spec = importlib.util.find_spec(data.module_name)
            assert spec is not None, f"{section}: module {data.module_name} is not installed"
            module = importlib.import_module(data.module_name)
            yield section, getattr(module, data.class_name), entry.get("config") or {}


def test_values_render_a_valid_dagster_instance(
    values: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = render_instance(values)
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(instance), encoding="utf-8")
    dagster_instance_config(str(tmp_path))  # raises DagsterInvalidConfigError when invalid
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "from-the-secret")
    for section, klass, config in _configured_classes(instance):
        result = process_config(resolve_to_config_type(klass.config_type()), config)
        assert result.success, f"{section}: {[error.message for error in result.errors or []]}"
    assert _configured_class(instance, "run_launcher") is K8sRunLauncher


def _configured_class(instance: dict[str, Any], section: str) -> type:
    return next(klass for name, klass, _ in _configured_classes(instance) if name == section)


def test_runs_are_queued_under_a_limit(values: dict[str, Any]) -> None:
    section = render_instance(values)["run_coordinator"]
    data = ConfigurableClassData(
        section["module"], section["class"], yaml.safe_dump(section["config"])
    )
    coordinator = data.rehydrate(as_type=QueuedRunCoordinator)
    assert 0 < coordinator.get_run_queue_config().max_concurrent_runs <= 16


def test_storage_is_an_external_postgres_whose_password_is_a_secret(values: dict[str, Any]):
    assert values["postgresql"]["enabled"] is False
    assert values["postgresql"]["postgresqlHost"]
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]
    assert not values["postgresql"].get("postgresqlPassword"), "a literal password in the values"


def _code_location(values: dict[str, Any]) -> dict[str, Any]:
    user_deployments = values["dagster-user-deployments"]
    assert user_deployments["enabled"] and user_deployments["enableSubchart"]
    (deployment,) = user_deployments["deployments"]
    return deployment


def test_code_location_is_the_one_dagster_dev_loads(values: dict[str, Any]) -> None:
    deployment = _code_location(values)
    args = deployment["dagsterApiGrpcArgs"]
    assert args[0] in ("-m", "--module-name")
    module = args[1]
    assert importlib.util.find_spec(module) is not None
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text(encoding="utf-8"))
    assert module == workspace["load_from"][0]["python_module"]["module_name"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert module == pyproject["tool"]["dagster"]["module_name"]
    # The chart passes `-p <port>` itself and points the workspace at that port.
    assert deployment["port"] == 3030
    assert not {"-p", "--port"} & set(args)


def test_code_location_and_runs_get_the_prod_environment(values: dict[str, Any]) -> None:
    deployment = _code_location(values)
    env = {variable["name"]: variable for variable in deployment["env"]}
    assert env[ENV_VARIABLE]["value"] == "prod" and "prod" in ENVIRONMENTS
    for name, variable in env.items():
        if any(marker in name for marker in SECRET_NAME_MARKERS):
            assert "value" not in variable, f"{name} has a literal value"
    assert SECRET in {source["name"] for source in deployment["envSecrets"]}
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    launcher = _k8s_run_launcher_config(values)
    assert SECRET in launcher["env_secrets"]


def test_kubernetes_parts_of_the_values_are_valid_kubernetes(values: dict[str, Any]) -> None:
    """The code server's Deployment as deployment-user.yaml renders it, and a run's Job."""
    deployment = _code_location(values)
    labels = {"component": "user-deployments", "deployment": deployment["name"]}
    image = f"{deployment['image']['repository']}:{deployment['image']['tag']}"
    port = str(deployment["port"])
    server = {
        "name": "dagster-user-deployments",
        "image": image,
        "imagePullPolicy": deployment["image"]["pullPolicy"],
        "args": [
            "dagster",
            "api",
            "grpc",
            "-h",
            "0.0.0.0",
            "-p",
            port,
            *deployment["dagsterApiGrpcArgs"],
        ],
        "env": deployment.get("env", []),
        "envFrom": [{"secretRef": source} for source in deployment.get("envSecrets", [])],
        "resources": deployment.get("resources", {}),
        "securityContext": deployment.get("securityContext", {}),
        "volumeMounts": deployment.get("volumeMounts", []),
    }
    code_server = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"{RELEASE}-{deployment['name']}", "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": deployment.get("podSecurityContext", {}),
                    "containers": [server],
                    "volumes": deployment.get("volumes", []),
                },
            },
        },
    }
    kubernetes_validate.validate(code_server, K8S_VERSION, strict=True)
    launcher = _k8s_run_launcher_config(values)
    run = {
        "name": "dagster",
        "image": image,
        "resources": launcher.get("resources", {}),
        "securityContext": launcher.get("security_context", {}),
        "volumeMounts": launcher.get("volume_mounts", []),
        "envFrom": [{"secretRef": {"name": name}} for name in launcher.get("env_secrets", [])],
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "dagster-run-0"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [run],
                    "volumes": launcher.get("volumes", []),
                }
            }
        },
    }
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)


def test_k8s_job_executor_accepts_the_documented_run_config(values: dict[str, Any]) -> None:
    """The executor a job opts into (executor_def=k8s_job_executor), set up as the values say."""
    launcher = _k8s_run_launcher_config(values)
    config = {
        "max_concurrent": 4,
        "env_secrets": launcher["env_secrets"],
        "step_k8s_config": {"container_config": {"resources": launcher["resources"]}},
    }
    schema = k8s_job_executor.config_schema.config_type
    result = process_config(resolve_to_config_type(schema), config)
    assert result.success, [error.message for error in result.errors or []]
