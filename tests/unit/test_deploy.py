"""Offline checks of the Kubernetes manifests in ``deploy/`` against the code they run (no cluster needed).

Schemas are ``make validate``'s job (kubernetes-validate, which skips the KEDA CRDs). These tests check what a
schema cannot: that the KEDA triggers name every queue the actors consume, that probes point at what
``worker_health.probe`` and the API serve, that the grace period outlasts the worker's shutdown timeout, that every
environment variable is one the code reads, and that no file holds a credential. See docs/deploy.md.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from dramatiq.common import q_name

from messaging.broadcast import is_broadcast

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SETTINGS_FILE = ROOT / "actors" / "settings.py"
# The Secrets are created out of band.
NOT_LISTED = {"kustomization.yaml", "secret.example.yaml", "api-keys-secret.example.yaml"}
WORKLOADS = ["tracedq-api", "tracedq-worker", "tracedq-scheduler"]


def _load(name: str) -> dict[str, Any]:
    documents = [doc for doc in yaml.safe_load_all((DEPLOY / name).read_text(encoding="utf-8")) if doc]
    assert len(documents) == 1, name
    return documents[0]


def _kustomization() -> dict[str, Any]:
    return _load("kustomization.yaml")


def _resources() -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) -> manifest, for every file the kustomization lists."""
    loaded = [_load(name) for name in _kustomization()["resources"]]
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in loaded}


def _container(kind: str, name: str) -> dict[str, Any]:
    containers = _resources()[(kind, name)]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", [])}


def _option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def _settings_env_names() -> set[str]:
    return set(re.findall(r"""env\.get\(\s*["']([A-Z0-9_]+)["']""", SETTINGS_FILE.read_text(encoding="utf-8")))


def test_the_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    """A new manifest is either applied or deliberately left out; the namespace is set once for all."""
    kustomization = _kustomization()
    on_disk = {path.name for path in DEPLOY.glob("*.yaml")} - NOT_LISTED
    assert sorted(kustomization["resources"]) == sorted(on_disk)
    assert kustomization["namespace"] == "tracedq"
    assert all(
        doc["metadata"]["namespace"] == "tracedq" for (kind, _), doc in _resources().items() if kind != "Namespace"
    )


def test_keda_triggers_cover_every_queue_the_worker_consumes() -> None:
    """One QueueLength trigger per main queue and one activation-only trigger per delay queue, over amqp."""
    import actors

    declared = actors.broker.get_declared_queues()  # the StubBroker lists delay queues too
    consumed = {queue for queue in declared if q_name(queue) == queue and not is_broadcast(queue)}
    assert {"orders", "inventory", "email", "users"} <= consumed
    scaled = _resources()[("ScaledObject", "tracedq-worker")]["spec"]
    triggers = scaled["triggers"]
    main = {t["metadata"]["queueName"] for t in triggers if not t["metadata"]["queueName"].endswith(".DQ")}
    delay = {t["metadata"]["queueName"] for t in triggers if t["metadata"]["queueName"].endswith(".DQ")}
    assert main == consumed
    assert delay == {f"{queue}.DQ" for queue in consumed}
    for trigger in triggers:
        metadata = trigger["metadata"]
        assert trigger["type"] == "rabbitmq"
        assert trigger["authenticationRef"] == {"name": "tracedq-rabbitmq"}
        assert all(isinstance(value, str) for value in metadata.values())  # the CRD's metadata is map[string]string
        assert (metadata["protocol"], metadata["mode"]) == ("amqp", "QueueLength")
        if metadata["queueName"].endswith(".DQ"):
            assert metadata["activationValue"] == "0" and int(metadata["value"]) >= 100_000
        else:
            assert "activationValue" not in metadata


def test_keda_scales_the_worker_by_its_own_capacity() -> None:
    """value = processes * threads * k; the scaler targets the worker and reads the Secret's broker URL."""
    scaled = _resources()[("ScaledObject", "tracedq-worker")]["spec"]
    command = _container("Deployment", "tracedq-worker")["command"]
    capacity = int(_option(command, "--processes")) * int(_option(command, "--threads"))
    assert scaled["scaleTargetRef"] == {"name": "tracedq-worker"}
    for trigger in scaled["triggers"]:
        if not trigger["metadata"]["queueName"].endswith(".DQ"):
            assert int(trigger["metadata"]["value"]) % capacity == 0, trigger
    auth = _resources()[("TriggerAuthentication", "tracedq-rabbitmq")]["spec"]
    assert auth["secretTargetRef"] == [{"parameter": "host", "name": "tracedq", "key": "BROKER_URL"}]


def test_the_worker_outlives_its_shutdown_timeout_and_probes_its_heartbeats() -> None:
    """Grace period > --worker-shutdown-timeout + 30 s of flushing; liveness reads the emptyDir heartbeats."""
    pod = _resources()[("Deployment", "tracedq-worker")]["spec"]["template"]["spec"]
    container = _container("Deployment", "tracedq-worker")
    env = _env(container)
    command = container["command"]
    assert command[0] == "tracedq-worker"
    assert pod["terminationGracePeriodSeconds"] > int(_option(command, "--worker-shutdown-timeout")) / 1000 + 30

    check = ["python", "-m", "worker_health.probe", "check"]
    check += ["--dir", env["WORKER_HEARTBEAT_DIR"], "--max-age", env["HEALTH_MAX_AGE"]]
    assert container["livenessProbe"]["exec"]["command"] == check
    assert container["startupProbe"]["exec"]["command"] == check
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "health"}
    assert {"name": "health", "containerPort": int(env["HEALTH_PORT"])} in container["ports"]

    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    heartbeat_mount = next(path for path in mounts if env["WORKER_HEARTBEAT_DIR"].startswith(path + "/"))
    assert "emptyDir" in volumes[mounts[heartbeat_mount]]


def test_the_api_probes_its_health_routes() -> None:
    """httpGet on /health/live and /health/ready, port 8000, behind a Service selecting only API pods."""
    container = _container("Deployment", "tracedq-api")
    assert {"name": "http", "containerPort": 8000} in container["ports"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    service = _resources()[("Service", "tracedq-api")]["spec"]
    pod_labels = _resources()[("Deployment", "tracedq-api")]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= pod_labels.items()
    assert service["ports"][0]["targetPort"] == "http"


def test_the_scheduler_runs_exactly_once() -> None:
    """periodiq sends every tick: one replica, and Recreate so a rollout never overlaps two."""
    spec = _resources()[("Deployment", "tracedq-scheduler")]["spec"]
    assert (spec["replicas"], spec["strategy"]) == (1, {"type": "Recreate"})
    assert _container("Deployment", "tracedq-scheduler")["command"] == ["periodiq", "actors"]


@pytest.mark.parametrize("name", WORKLOADS)
def test_every_workload_is_locked_down_and_sized(name: str) -> None:
    """Non-root, read-only root with an emptyDir /tmp, no privilege escalation, requests and limits, our image."""
    pod = _resources()[("Deployment", name)]["spec"]["template"]["spec"]
    container = _container("Deployment", name)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    tmp = next(mount["name"] for mount in container["volumeMounts"] if mount["mountPath"] == "/tmp")
    assert "emptyDir" in next(volume for volume in pod["volumes"] if volume["name"] == tmp)
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert {"cpu", "memory"} <= container["resources"]["limits"].keys()
    assert container["image"].startswith("tracedq:")


@pytest.mark.parametrize("name", WORKLOADS)
def test_every_environment_variable_is_read_by_the_code(name: str) -> None:
    """ConfigMap keys and container env are settings (actors/settings.py) or OTEL_* (the SDK); secrets come by ref."""
    container = _container("Deployment", name)
    known = _settings_env_names()
    assert "RABBITMQ_QUEUE_TYPE" in known  # the grep works
    config = _resources()[("ConfigMap", "tracedq")]["data"]
    names = set(config) | set(_env(container))
    assert {var for var in names if var not in known and not var.startswith("OTEL_")} == set()
    assert config["RABBITMQ_QUEUE_TYPE"] in ("classic", "quorum")
    assert {"configMapRef": {"name": "tracedq"}} in container["envFrom"]
    assert {"secretRef": {"name": "tracedq"}} in container["envFrom"]


def test_no_file_holds_a_credential() -> None:
    """The Secret example has placeholders only; no other manifest carries a URL with a password."""
    example = _load("secret.example.yaml")
    assert example["kind"] == "Secret"
    assert set(example["stringData"]) <= _settings_env_names()
    assert all("CHANGE_ME" in value for value in example["stringData"].values())
    for path in DEPLOY.rglob("*.yaml"):
        passwords = set(re.findall(r"://[^:/@\s]*:([^@\s]+)@", path.read_text(encoding="utf-8")))
        assert passwords <= {"CHANGE_ME", "PASSWORD"}, path


def test_the_quorum_component_switches_only_the_queue_type() -> None:
    """components/quorum patches the ConfigMap's RABBITMQ_QUEUE_TYPE and nothing else."""
    component = yaml.safe_load((DEPLOY / "components" / "quorum" / "kustomization.yaml").read_text(encoding="utf-8"))
    assert component["kind"] == "Component"
    (patch,) = component["patches"]
    patched = yaml.safe_load((DEPLOY / "components" / "quorum" / patch["path"]).read_text(encoding="utf-8"))
    assert (patched["kind"], patched["metadata"]["name"], patched["data"]) == (
        "ConfigMap",
        "tracedq",
        {"RABBITMQ_QUEUE_TYPE": "quorum"},
    )


def test_the_api_reads_its_keys_from_a_secret_of_its_own() -> None:
    """API_KEYS_FILE names a file of the mounted Secret tracedq-api-keys; worker and scheduler never mount it."""
    pod = _resources()[("Deployment", "tracedq-api")]["spec"]["template"]["spec"]
    container = _container("Deployment", "tracedq-api")
    volume = next(v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "tracedq-api-keys")
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    assert mount["readOnly"] is True
    assert _env(container)["API_KEYS_FILE"] == f"{mount['mountPath']}/keys"
    example = _load("api-keys-secret.example.yaml")
    assert (example["kind"], example["metadata"]["name"]) == ("Secret", "tracedq-api-keys")
    assert list(example["stringData"]) == ["keys"] and "CHANGE_ME" in example["stringData"]["keys"]
    for name in ("tracedq-worker", "tracedq-scheduler"):
        volumes = _resources()[("Deployment", name)]["spec"]["template"]["spec"].get("volumes", [])
        assert all("secret" not in v for v in volumes), name
        assert "API_KEYS_FILE" not in _env(_container("Deployment", name)), name
