"""``tracedq trace show --jaeger`` draws a trace from Jaeger's HTTP query API; ``JAEGER_URL`` is only a fallback.

No Jaeger runs on this machine (no container engine), so the test serves a response in the documented
``/api/traces/{id}`` shape from a real HTTP server on loopback; the client code under test is unchanged.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli.main import tracedq
from cli.tracestore.store import TraceStore
from tests.unit.cli.views import span

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
RESPONSE: dict[str, Any] = {
    "data": [
        {
            "traceID": TRACE_ID,
            "processes": {"p1": {"serviceName": "tracedq-api"}, "p2": {"serviceName": "tracedq-worker"}},
            "spans": [
                {
                    "traceID": TRACE_ID,
                    "spanID": "00f067aa0ba902b7",
                    "operationName": "POST /orders",
                    "references": [],
                    "startTime": 1_764_000_000_000_000,
                    "duration": 9_000,
                    "tags": [],
                    "processID": "p1",
                },
                {
                    "traceID": TRACE_ID,
                    "spanID": "1111111111111111",
                    "operationName": "send orders",
                    "references": [{"refType": "CHILD_OF", "traceID": TRACE_ID, "spanID": "00f067aa0ba902b7"}],
                    "startTime": 1_764_000_000_002_000,
                    "duration": 2_000,
                    "tags": [],
                    "processID": "p1",
                },
                {
                    "traceID": TRACE_ID,
                    "spanID": "2222222222222222",
                    "operationName": "process orders",
                    "references": [{"refType": "CHILD_OF", "traceID": TRACE_ID, "spanID": "1111111111111111"}],
                    "startTime": 1_764_000_000_005_000,
                    "duration": 3_000,
                    "processID": "p2",
                    "tags": [
                        {"key": "otel.status_code", "type": "string", "value": "ERROR"},
                        {"key": "otel.status_description", "type": "string", "value": "db down"},
                        {"key": "dramatiq.message.outcome", "type": "string", "value": "retrying"},
                    ],
                },
            ],
        }
    ]
}


jaeger_requests: list[str] = []


@pytest.fixture
def jaeger_url() -> Iterator[str]:
    jaeger_requests.clear()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            jaeger_requests.append(self.path)
            found = self.path == f"/api/traces/{TRACE_ID}"
            body = json.dumps(RESPONSE if found else {"data": None, "errors": [{"msg": "trace not found"}]})
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_show_draws_the_tree_from_jaeger(jaeger_url: str) -> None:
    """Parents come from CHILD_OF references; the failed span shows its status description."""
    result = CliRunner().invoke(tracedq, ["trace", "show", TRACE_ID, "--jaeger", "--jaeger-url", jaeger_url])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"trace {TRACE_ID}  (9.0 ms)"
    assert [line.split("|")[0].rstrip() for line in lines[1:]] == [
        "  POST /orders",
        "    send orders",
        "      process orders",
    ]
    assert "ERROR db down outcome=retrying" in lines[3]


def test_unknown_trace_is_a_clear_error(jaeger_url: str) -> None:
    """A trace Jaeger does not have: exit 1 and the URL in the message."""
    result = CliRunner().invoke(tracedq, ["trace", "show", "f" * 32, "--jaeger", "--jaeger-url", jaeger_url])
    assert result.exit_code == 1
    assert "HTTP 404" in result.output


@pytest.fixture
def local_store(tmp_path: Path) -> Path:
    """A local store holding one trace, a different tree from Jaeger's, under the same id."""
    path = tmp_path / "traces.db"
    with TraceStore(path, create=True) as store:
        store.add_spans([span(TRACE_ID, "1", "local root", start=0, end=2)])
    return path


def test_an_exported_jaeger_url_does_not_hide_the_local_trace(jaeger_url: str, local_store: Path) -> None:
    """Issue 12 §3: JAEGER_URL set, the trace stored locally: drawn from the store, prefixes work, Jaeger unasked."""
    result = CliRunner(env={"JAEGER_URL": jaeger_url}).invoke(
        tracedq, ["trace", "show", TRACE_ID[:8], "--store", str(local_store)]
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[2].startswith("  local root ")
    assert jaeger_requests == []


def test_jaeger_is_asked_when_the_store_has_no_match_and_says_so(jaeger_url: str, tmp_path: Path) -> None:
    empty = tmp_path / "traces.db"
    TraceStore(empty, create=True).close()
    runner = CliRunner(env={"JAEGER_URL": jaeger_url})
    result = runner.invoke(tracedq, ["trace", "show", TRACE_ID, "--store", str(empty)])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [f"{TRACE_ID} is not in {empty}: reading it from Jaeger at {jaeger_url}"]
    assert result.stdout.splitlines()[1].startswith("  POST /orders ")
    assert jaeger_requests == [f"/api/traces/{TRACE_ID}"]


def test_a_prefix_is_never_sent_to_jaeger(jaeger_url: str, tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    fallback = CliRunner(env={"JAEGER_URL": jaeger_url}).invoke(
        tracedq, ["trace", "show", "4bf9", "--store", str(missing)]
    )
    assert fallback.exit_code == 1
    assert fallback.output.splitlines()[-1] == (
        f"Error: no trace 4bf9... in {missing}, and Jaeger ({jaeger_url}) needs the whole 32-digit id"
    )
    asked = CliRunner().invoke(tracedq, ["trace", "show", "4bf9", "--jaeger", "--jaeger-url", jaeger_url])
    assert asked.exit_code == 2
    assert asked.output.splitlines()[-1] == (
        "Error: Invalid value for TRACE_ID: Jaeger needs the whole 32-digit trace id, not a prefix"
    )
    assert jaeger_requests == []
