"""API keys: 401 in the API's error shape when missing or wrong, every configured key accepted (rotation),
health always open, /metrics and the docs open or protected as configured, and no silently open API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from fastapi import FastAPI
from fastapi.testclient import TestClient

import actors
from actors.settings import api_key_digest, load_settings
from api.app import create_app
from api.auth import ApiKeys, NoApiKeys
from api.health import Checks
from tests.api_support import AUTH, KEY, OLD_KEY, api_keys, sqlite_uow
from tests.environment.processes import PROJECT_ROOT

ROUTES: dict[str, dramatiq.Actor[Any, Any]] = {
    "orders": actors.place_order,
    "users": actors.register_user,
    "catalog": actors.catalog.refresh_catalog_cache,
}
USER = {"user_id": "u-1", "email": "grace@example.com", "name": "Grace"}
MISSING = {"error": {"code": "unauthorized", "message": "send the API key as `Authorization: Bearer <key>`"}}
INVALID = {"error": {"code": "unauthorized", "message": "the API key is not valid"}}


def make_app(keys: ApiKeys | None = None, **options: bool) -> FastAPI:
    broker = actors.broker
    assert isinstance(broker, StubBroker)
    broker.flush_all()
    return create_app(
        broker=broker,
        actors=ROUTES,
        jaeger_url="http://jaeger:16686",
        max_body_bytes=4096,
        checks=Checks(probes={"database": lambda: None}, render_metrics=lambda: b"# metrics\n"),
        api_keys=keys or api_keys(),
        uow=sqlite_uow(),
        **options,
    )


@pytest.fixture
def client() -> TestClient:
    return TestClient(make_app())


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/orders"), ("GET", "/orders/o-1"), ("POST", "/users"), ("POST", "/catalog/refresh")]
)
def test_every_producing_route_wants_a_key(client: TestClient, method: str, path: str) -> None:
    """No Authorization header: 401, the error shape, WWW-Authenticate: Bearer, and nothing queued."""
    response = client.request(method, path, json=USER)
    assert (response.status_code, response.json()) == (401, MISSING)
    assert response.headers["www-authenticate"] == "Bearer"
    assert actors.broker.queues.get("users", None) is None or actors.broker.queues["users"].qsize() == 0


@pytest.mark.parametrize(
    "header", [f"Bearer {KEY}x", f"Bearer {KEY[:-1]}", "Bearer ", f"Basic {KEY}", KEY, "Bearer not-a-key"]
)
def test_a_wrong_key_is_refused(client: TestClient, header: str) -> None:
    """A wrong key, a truncated one, another scheme or a bare key: 401; nothing is queued."""
    response = client.post("/users", json=USER, headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json() in (MISSING, INVALID)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert actors.broker.queues["users"].qsize() == 0


def test_a_wrong_bearer_key_is_named_invalid(client: TestClient) -> None:
    """RFC 6750: a bearer credential that is not a key says error="invalid_token"."""
    response = client.post("/users", json=USER, headers={"Authorization": "Bearer not-a-key"})
    assert (response.status_code, response.json()) == (401, INVALID)
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_the_right_key_is_accepted(client: TestClient) -> None:
    response = client.post("/users", json=USER, headers=AUTH)
    assert response.status_code == 202
    assert actors.broker.queues["users"].qsize() == 1


def test_both_keys_of_a_rotation_are_accepted_and_a_dropped_one_is_not() -> None:
    """Old and new key work side by side; once the old one is dropped from the list it is refused."""
    during = TestClient(make_app(ApiKeys.of(KEY, OLD_KEY)))
    for key in (KEY, OLD_KEY):
        assert during.post("/users", json=USER, headers={"Authorization": f"Bearer {key}"}).status_code == 202
    after = TestClient(make_app(ApiKeys.of(KEY)))
    assert after.post("/users", json=USER, headers={"Authorization": f"Bearer {OLD_KEY}"}).status_code == 401
    assert after.post("/users", json=USER, headers=AUTH).status_code == 202


def test_health_routes_stay_open(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "ok"}
    assert client.get("/health/ready").status_code == 200


def test_metrics_and_docs_are_open_by_default(client: TestClient) -> None:
    assert client.get("/metrics").text == "# metrics\n"
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs").status_code == 200
    assert client.get("/redoc").status_code == 200


def test_metrics_and_docs_behind_the_key_when_configured() -> None:
    """metrics_public/docs_public off: 401 without the key, 200 with it; health is still open."""
    client = TestClient(make_app(metrics_public=False, docs_public=False))
    for path in ("/metrics", "/openapi.json", "/docs", "/redoc"):
        response = client.get(path)
        assert (response.status_code, response.json()) == (401, MISSING), path
        assert client.get(path, headers=AUTH).status_code == 200, path
    assert client.get("/health/live").status_code == 200


def test_the_openapi_document_declares_bearer_on_protected_routes_only(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    secured = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if operation.get("security") == [{"HTTPBearer": []}]
    }
    assert secured == {
        ("POST", "/orders"),
        ("GET", "/orders/{order_id}"),
        ("POST", "/users"),
        ("POST", "/catalog/refresh"),
    }
    assert "401" in document["paths"]["/orders"]["post"]["responses"]


def test_disabled_auth_opens_every_route_and_declares_no_scheme() -> None:
    """ApiKeys.disabled() (API_AUTH=off): no key needed, no security scheme in the document."""
    client = TestClient(make_app(ApiKeys.disabled()))
    assert client.post("/users", json=USER).status_code == 202
    assert "securitySchemes" not in client.get("/openapi.json").json().get("components", {})


def test_keys_cannot_be_empty_unless_disabled() -> None:
    with pytest.raises(NoApiKeys, match="set API_KEYS"):
        ApiKeys(digests=())


# -- settings ------------------------------------------------------------------------------------------------


def test_keys_from_the_environment_and_a_file_are_kept_as_digests(tmp_path: Path) -> None:
    """API_KEYS comma-separated plus API_KEYS_FILE (lines, comments, blanks): digests only, no duplicates."""
    third = "third-key-0123456789abcdef0123456789abcdef"
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# rotated 2026-12-01\n{OLD_KEY}\n\n  {third}  \n{KEY}\n", encoding="utf-8")
    settings = load_settings({"API_KEYS": f"{KEY}, {OLD_KEY}", "API_KEYS_FILE": str(keys_file)})
    assert settings.api_key_digests == tuple(api_key_digest(key) for key in (KEY, OLD_KEY, third))
    assert KEY not in repr(settings)
    assert (settings.api_auth, settings.api_metrics_public, settings.api_docs_public) == (True, True, True)


def test_settings_refuse_short_keys_a_missing_file_and_unknown_flags(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^1 API key\(s\) shorter than 32 characters") as short:
        load_settings({"API_KEYS": f"{KEY},hunter2"})
    assert "hunter2" not in str(short.value)
    with pytest.raises(ValueError, match=r"API_KEYS_FILE=.* cannot be read"):
        load_settings({"API_KEYS_FILE": str(tmp_path / "missing")})
    with pytest.raises(ValueError, match="API_AUTH must be one of"):
        load_settings({"API_AUTH": "of"})
    relaxed = load_settings({"API_AUTH": "off", "API_METRICS_PUBLIC": "false", "API_DOCS_PUBLIC": "no"})
    assert (relaxed.api_auth, relaxed.api_metrics_public, relaxed.api_docs_public) == (False, False, False)


def _import_api(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environ = {"PATH": "/usr/bin:/bin", "BROKER_URL": "memory://", "OTEL_TRACES_EXPORTER": "none", **env}
    return subprocess.run(
        [sys.executable, "-c", "import api.main"],
        cwd=PROJECT_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_api_process_refuses_to_start_without_a_key() -> None:
    """No key and no API_AUTH=off: exit 1 with one line saying what to set; API_AUTH=off starts."""
    refused = _import_api({})
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        "tracedq API refuses to start: no API key configured: set API_KEYS (comma-separated) or API_KEYS_FILE "
        "(one key per line), or API_AUTH=off to run the API open to anyone (local development only)"
    )
    assert _import_api({"API_AUTH": "off"}).returncode == 0
    assert _import_api({"API_KEYS": KEY}).returncode == 0
