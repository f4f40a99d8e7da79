"""The API's error shapes and its OpenAPI contract, on the in-process broker; schemathesis finds no 5xx."""

from __future__ import annotations

from typing import Any

import dramatiq
import pytest
import schemathesis
from dramatiq.brokers.stub import StubBroker
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

import actors
from api.app import create_app
from api.health import Checks
from tests.api_support import AUTH, api_keys, sqlite_uow

ROUTES: dict[str, dramatiq.Actor[Any, Any]] = {
    "orders": actors.place_order,
    "users": actors.register_user,
    "catalog": actors.catalog.refresh_catalog_cache,
}


def make_app(probes: dict[str, Any] | None = None, max_body_bytes: int = 2048) -> FastAPI:
    broker = actors.broker
    assert isinstance(broker, StubBroker)
    return create_app(
        broker=broker,
        actors=ROUTES,
        jaeger_url="http://jaeger:16686",
        max_body_bytes=max_body_bytes,
        checks=Checks(probes=probes or {}, render_metrics=lambda: b"# metrics\n"),
        api_keys=api_keys(),
        uow=sqlite_uow(),
    )


_JSON = {"content-type": "application/json"}


@pytest.fixture
def client() -> TestClient:
    actors.broker.flush_all()
    return TestClient(make_app(), headers=AUTH)


def test_422_names_every_bad_field(client: TestClient) -> None:
    """Each problem is listed with its field path."""
    response = client.post("/orders", json={"order_id": "", "customer_email": "x", "lines": [{"sku": "A"}]})
    assert response.status_code == 422
    fields = {f["field"] for f in response.json()["error"]["fields"]}
    assert fields == {"order_id", "customer_email", "lines.0.quantity"}
    assert response.json()["error"]["code"] == "validation_error"


def test_unknown_fields_and_future_versions_are_refused(client: TestClient) -> None:
    """Extra fields are an error, not silently dropped; a newer schema version is named as such."""
    order = {"order_id": "o", "customer_email": "a@b.io", "lines": [{"sku": "A", "quantity": 1}]}
    extra = client.post("/orders", json={**order, "coupon": "FREE"}).json()["error"]
    assert extra["fields"] == [{"field": "coupon", "problem": "Extra inputs are not permitted"}]
    future = client.post("/orders", json={**order, "schema_version": 3}).json()["error"]
    assert future["fields"] == [
        {"field": "schema_version", "problem": "3 is newer than this service understands (max 1)"}
    ]


def test_malformed_json_is_a_400_naming_the_json_error(client: TestClient) -> None:
    """Not a 422 with the character offset as a field: the decoder's error, with line and column."""
    response = client.post("/orders", content=b'{"order_id": "o",\n "lines": [1,]}', headers=_JSON)
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "invalid_json",
            "message": "the body is not valid JSON: Expecting value at line 2, column 14",
        }
    }


@pytest.mark.parametrize(
    ("headers", "got"),
    [
        ({"content-type": "text/plain"}, "got 'text/plain'"),
        ({"content-type": "application/x-www-form-urlencoded"}, "got 'application/x-www-form-urlencoded'"),
        ({}, "no Content-Type was sent"),
    ],
)
def test_a_body_not_sent_as_json_is_a_415_saying_so(client: TestClient, headers: dict[str, str], got: str) -> None:
    body = b'{"user_id": "u", "email": "a@b.io", "name": "Ada"}'
    response = client.post("/users", content=body, headers=headers)
    assert response.status_code == 415
    assert response.json() == {
        "error": {
            "code": "unsupported_media_type",
            "message": f"send the body as JSON with Content-Type: application/json ({got})",
        }
    }
    assert client.post("/users", content=body, headers=_JSON).status_code == 202  # the same body, as JSON


def test_a_bad_email_is_named_in_words_not_by_its_regular_expression(client: TestClient) -> None:
    response = client.post("/users", json={"user_id": "u", "email": "ada.example.com", "name": "Ada\u0000"})
    assert response.status_code == 422
    assert response.json()["error"] == {
        "code": "validation_error",
        "message": "email: Input should be an email address like name@example.com; "
        "name: Input should not contain the NUL character (U+0000)",
        "fields": [
            {"field": "email", "problem": "Input should be an email address like name@example.com"},
            {"field": "name", "problem": "Input should not contain the NUL character (U+0000)"},
        ],
    }
    assert "ada.example.com" not in response.text  # the input is not echoed back


def test_413_for_large_bodies_declared_or_streamed(client: TestClient) -> None:
    """Over the limit: 413 in the shared shape, whether Content-Length says so or the body is chunked."""
    declared = client.post("/orders", content=b"{" + b" " * 4096 + b"}", headers={"content-type": "application/json"})
    assert declared.status_code == 413
    assert declared.json()["error"]["code"] == "payload_too_large"

    def chunks() -> Any:
        for _ in range(10):
            yield b" " * 512

    streamed = client.post("/orders", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413


def test_404_and_405_share_the_error_shape(client: TestClient) -> None:
    """Unknown routes and methods answer in the same JSON shape."""
    assert client.get("/nope").json() == {"error": {"code": "not_found", "message": "Not Found"}}
    assert client.get("/orders").json()["error"]["code"] == "method_not_allowed"


def test_ready_reports_each_dependency() -> None:
    """Readiness lists every check; one failing makes it 503 and names the error."""

    def down() -> None:
        raise ConnectionRefusedError("no broker")

    client = TestClient(make_app({"broker": down, "database": lambda: None}))
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json() == {
        "ready": False,
        "checks": {"broker": {"ok": False, "error": "ConnectionRefusedError: no broker"}, "database": {"ok": True}},
    }
    assert client.get("/health/live").json() == {"status": "ok"}


# The production limit (64 KiB): schemathesis expects a too-long `lines` array to be a 422, not a 413.
schema = schemathesis.openapi.from_asgi("/openapi.json", make_app(max_body_bytes=64 * 1024))


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_api_fail(case: schemathesis.Case) -> None:
    """Generated from the app's own OpenAPI document: no request yields a 5xx or breaks the schema."""
    actors.broker.flush_all()
    case.call_and_validate(headers=AUTH)
