"""Offline structural checks of the compose stack in ``compose/`` (no Docker engine needed).

What an engine would catch only at ``docker compose up`` time: a mounted file that does not exist, a collector
pipeline naming an undefined component, a Grafana link to a datasource UID nobody provides, a port published
on every interface, an environment variable no code reads. Dashboards and alert rules are checked against a
real metrics scrape in ``tests/unit/test_dashboards.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
COLLECTOR_FILE = COMPOSE_DIR / "otel-collector.yaml"
PROMETHEUS_FILE = COMPOSE_DIR / "prometheus.yml"
DATASOURCES_FILE = COMPOSE_DIR / "grafana" / "provisioning" / "datasources" / "datasources.yaml"
DASHBOARDS_DIR = COMPOSE_DIR / "grafana" / "dashboards"
SETTINGS_FILE = ROOT / "actors" / "settings.py"

YAML_FILES = sorted([*COMPOSE_DIR.rglob("*.yaml"), *COMPOSE_DIR.rglob("*.yml")])
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?+][^}]*)?\}")


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(COMPOSE_FILE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def app_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The services built from our Dockerfile (api, worker, scheduler, db)."""
    return {name: svc for name, svc in services.items() if "build" in svc}


def settings_env_names() -> set[str]:
    """Every variable ``actors/settings.py`` reads, from its ``env.get("NAME"`` calls."""
    return set(re.findall(r"""env\.get\(\s*["']([A-Z0-9_]+)["']""", SETTINGS_FILE.read_text(encoding="utf-8")))


def otel_sdk_env_names() -> set[str]:
    """Every ``OTEL_*`` variable the OpenTelemetry API, SDK and exporter modules name."""
    import opentelemetry.environment_variables as api_env
    import opentelemetry.sdk.environment_variables as sdk_env

    return {
        value
        for module in (api_env, sdk_env)
        for key, value in vars(module).items()
        if key.startswith("OTEL_") and isinstance(value, str)
    }


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair in nested dicts and lists."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def test_there_is_something_to_check() -> None:
    names = {path.relative_to(COMPOSE_DIR).as_posix() for path in YAML_FILES}
    assert {
        "docker-compose.yml",
        "otel-collector.yaml",
        "prometheus.yml",
        "loki.yaml",
        "grafana/provisioning/datasources/datasources.yaml",
    } <= names


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.relative_to(COMPOSE_DIR).as_posix())
def test_every_yaml_file_parses_to_a_mapping(path: Path) -> None:
    assert isinstance(load(path), dict)


@pytest.mark.parametrize("path", sorted(DASHBOARDS_DIR.glob("*.json")), ids=lambda p: p.name)
def test_every_dashboard_is_json_with_a_fixed_uid(path: Path) -> None:
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    assert dashboard["uid"] and dashboard["panels"]


# --- compose ------------------------------------------------------------------------------------------------


def test_every_bind_mount_exists_under_compose(services: dict[str, dict[str, Any]]) -> None:
    missing = []
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                continue  # a named volume
            path = (COMPOSE_DIR / source).resolve()
            if not path.is_relative_to(COMPOSE_DIR) or not path.exists():
                missing.append(f"{name}: {source}")
    assert not missing


def test_app_services_build_our_dockerfile(app_services: dict[str, dict[str, Any]]) -> None:
    assert set(app_services) == {"api", "worker", "scheduler", "db"}
    for svc in app_services.values():
        context = (COMPOSE_DIR / svc["build"]["context"]).resolve()
        assert context == ROOT
        assert (context / svc["build"]["dockerfile"]).is_file()


def test_dockerfile_installs_the_lock_without_dev_and_runs_unprivileged() -> None:
    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text(encoding="utf-8")
    assert "uv sync --locked --no-dev" in dockerfile
    assert len(re.findall(r"^FROM ", dockerfile, re.MULTILINE)) >= 2
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    assert users and not users[-1].startswith(("root", "0"))


def test_commands_run_the_project_entry_points(app_services: dict[str, dict[str, Any]]) -> None:
    assert app_services["api"]["command"][:2] == ["uvicorn", "api.main:app"]
    assert app_services["worker"]["command"] == ["tracedq-worker"]
    assert app_services["scheduler"]["command"] == ["periodiq", "actors"]
    assert app_services["db"]["command"] == ["sh", "-c", "python -m actors.db upgrade && python -m actors.db seed"]
    assert app_services["db"]["restart"] == "no"


def test_every_image_is_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        if "build" in svc:
            continue
        image = svc["image"]
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), name


def test_published_ports_bind_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    wrong = []
    for name, svc in services.items():
        for port in svc.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":", 1)[0]
            if host_ip != "127.0.0.1" or (isinstance(port, str) and port.count(":") != 2):
                wrong.append(f"{name}: {port}")
    assert not wrong


def test_depends_on_names_existing_services(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for dependency in svc.get("depends_on", []):
            assert dependency in services, f"{name} -> {dependency}"
            assert dependency != name


def test_app_env_vars_are_read_by_settings_or_the_otel_sdk(app_services: dict[str, dict[str, Any]]) -> None:
    known = settings_env_names() | otel_sdk_env_names()
    assert {"BROKER_URL", "DATABASE_URL", "SMTP_HOST", "JAEGER_URL"} <= settings_env_names()  # the grep works
    unread = {f"{name}: {var}" for name, svc in app_services.items() for var in env_of(svc) if var not in known}
    assert not unread


@pytest.mark.parametrize("service", ["api", "worker", "scheduler", "db"])
def test_app_env_points_at_the_stack(app_services: dict[str, dict[str, Any]], service: str) -> None:
    env = env_of(app_services[service])
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
    assert env["OTEL_METRICS_EXPORTER"] == "otlp"
    assert env["OTEL_SERVICE_NAME"]
    assert "service.namespace=" in env["OTEL_RESOURCE_ATTRIBUTES"]  # Grafana's trace-to-logs key
    assert (env["SMTP_HOST"], env["SMTP_PORT"]) == ("mailpit", "1025")
    assert env["BROKER_URL"].startswith("amqp://") and "@rabbitmq:5672/" in env["BROKER_URL"]
    assert env["DATABASE_URL"].startswith("postgresql+psycopg://") and "@postgres:5432/" in env["DATABASE_URL"]
    assert env["JAEGER_URL"].startswith("http://")


def test_worker_health_port_matches_the_scrape_target(app_services: dict[str, dict[str, Any]]) -> None:
    assert env_of(app_services["worker"]).get("HEALTH_PORT", "9200") == "9200"


def test_no_credentials_in_files(services: dict[str, dict[str, Any]]) -> None:
    secretish = re.compile(r"PASS|SECRET|TOKEN|_KEY$")
    for name, svc in services.items():
        for var, value in env_of(svc).items():
            if secretish.search(var):
                assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]+\}", value), f"{name}: {var} must be required from env"
            for url_var in ("BROKER_URL", "DATABASE_URL"):
                if var == url_var:
                    userinfo = value.split("://", 1)[1].rsplit("@", 1)[0]
                    assert re.search(r":\$\{[A-Z0-9_]+:\?[^}]+\}$", userinfo), f"{name}: {var} password"
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GF_ADMIN_PASSWORD:?")


def test_env_example_names_every_required_variable() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    required = {m.group(1) for m in INTERPOLATION.finditer(text) if ":?" in m.group(0)}
    example = (COMPOSE_DIR / ".env.example").read_text(encoding="utf-8")
    documented = set(re.findall(r"^([A-Z0-9_]+)=", example, re.MULTILINE))
    assert required and required <= documented
    # Nothing filled in for the secrets.
    assert all(not value for var, value in re.findall(r"^([A-Z0-9_]*PASSWORD)=(.*)$", example, re.MULTILINE))


def test_the_api_keys_arrive_as_a_secret_file(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    """API_KEYS from compose/.env becomes the secret file API_KEYS_FILE names; only the api service gets it."""
    assert compose["secrets"]["api_keys"] == {"environment": "API_KEYS"}
    assert services["api"]["secrets"] == ["api_keys"]
    assert env_of(services["api"])["API_KEYS_FILE"] == "/run/secrets/api_keys"  # compose's mount point
    assert [name for name, svc in services.items() if "secrets" in svc] == ["api"]
    example = (COMPOSE_DIR / ".env.example").read_text(encoding="utf-8")
    assert re.search(r"^API_KEYS=$", example, re.MULTILINE)  # documented, nothing filled in


# --- collector ----------------------------------------------------------------------------------------------


def test_collector_pipelines_use_only_defined_components() -> None:
    config = load(COLLECTOR_FILE)
    defined = {kind: set(config.get(kind) or {}) for kind in ("receivers", "processors", "exporters", "connectors")}
    service = config["service"]
    assert set(service.get("extensions", [])) <= set(config.get("extensions") or {})
    used_as_exporter: set[str] = set()
    used_as_receiver: set[str] = set()
    for name, pipeline in service["pipelines"].items():
        for receiver in pipeline["receivers"]:
            assert receiver in defined["receivers"] | defined["connectors"], f"{name}: {receiver}"
            used_as_receiver.add(receiver)
        for processor in pipeline.get("processors", []):
            assert processor in defined["processors"], f"{name}: {processor}"
        for exporter in pipeline["exporters"]:
            assert exporter in defined["exporters"] | defined["connectors"], f"{name}: {exporter}"
            used_as_exporter.add(exporter)
    # A connector must close a loop: exported by one pipeline and received by another.
    for connector in defined["connectors"]:
        assert connector in used_as_exporter and connector in used_as_receiver, connector


def test_collector_routes_signals_as_designed() -> None:
    config = load(COLLECTOR_FILE)
    pipelines = config["service"]["pipelines"]
    exporters = config["exporters"]
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"] == "0.0.0.0:4318"
    assert exporters["otlp_grpc/jaeger"]["endpoint"] == "jaeger:4317"
    assert exporters["otlp_http/loki"]["endpoint"] == "http://loki:3100/otlp"
    assert exporters["otlp_http/prometheus"]["endpoint"] == "http://prometheus:9090/api/v1/otlp"
    assert "otlp_grpc/jaeger" in pipelines["traces"]["exporters"]
    assert "otlp_http/loki" in pipelines["logs"]["exporters"]
    assert "otlp_http/prometheus" in pipelines["metrics"]["exporters"]
    assert config["connectors"]["span_metrics"]["exemplars"]["enabled"] is True


def test_collector_config_is_the_mounted_one(services: dict[str, dict[str, Any]]) -> None:
    mounts = [v.split(":")[0] for v in services["otel-collector"]["volumes"]]
    assert "./otel-collector.yaml" in mounts


# --- prometheus ---------------------------------------------------------------------------------------------


def test_prometheus_scrapes_the_stack(services: dict[str, dict[str, Any]]) -> None:
    config = load(PROMETHEUS_FILE)
    targets = {
        (job["job_name"], target, job.get("metrics_path", "/metrics"))
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    hosts = {target for _, target, _ in targets}
    assert {"otel-collector:8888", "rabbitmq:15692", "worker:9200"} <= hosts
    for _, target, _ in targets:
        assert target.split(":")[0] in services, target
    assert any(t == "worker:9200" and p == "/metrics" for _, t, p in targets)
    command = services["prometheus"]["command"]
    assert "--web.enable-otlp-receiver" in command and "--enable-feature=exemplar-storage" in command


def test_app_metrics_reach_prometheus_once(app_services: dict[str, dict[str, Any]]) -> None:
    """The app pushes its metrics over OTLP, so a scrape of an app process may keep only its own extras."""
    assert all("otlp" in app["environment"]["OTEL_METRICS_EXPORTER"] for app in app_services.values())
    for job in load(PROMETHEUS_FILE)["scrape_configs"]:
        hosts = {target.split(":")[0] for static in job["static_configs"] for target in static["targets"]}
        if hosts & set(app_services):
            keeps = [rule for rule in job.get("metric_relabel_configs", []) if rule.get("action") == "keep"]
            assert keeps and all(rule["source_labels"] == ["__name__"] for rule in keeps), job["job_name"]
            assert not re.match(keeps[0]["regex"], "messaging_client_consumed_messages_total"), job["job_name"]


# --- grafana ------------------------------------------------------------------------------------------------


def test_grafana_datasource_uids_are_fixed_and_references_resolve() -> None:
    datasources = load(DATASOURCES_FILE)["datasources"]
    uids = {ds["uid"] for ds in datasources}
    assert {"prometheus", "loki", "jaeger"} <= uids
    referenced = {value for key, value in walk(datasources) if key == "datasourceUid"}
    assert referenced and referenced <= uids


def test_grafana_correlations_are_provisioned() -> None:
    by_uid = {ds["uid"]: ds for ds in load(DATASOURCES_FILE)["datasources"]}
    derived = by_uid["loki"]["jsonData"]["derivedFields"]
    assert any(f["matcherRegex"] == "trace_id" and f["datasourceUid"] == "jaeger" for f in derived)
    to_logs = by_uid["jaeger"]["jsonData"]["tracesToLogsV2"]
    assert to_logs["datasourceUid"] == "loki"
    assert "$${__trace.traceId}" in to_logs["query"]  # `$$`: Grafana interpolates `${...}` from the environment
    exemplars = by_uid["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert any(e["name"] == "trace_id" and e["datasourceUid"] == "jaeger" for e in exemplars)


def test_grafana_variables_are_escaped() -> None:
    # An unescaped ${__...} would be replaced by an (empty) environment variable at provisioning time.
    text = DATASOURCES_FILE.read_text(encoding="utf-8")
    assert not re.search(r"(?<!\$)\$\{__", text)
