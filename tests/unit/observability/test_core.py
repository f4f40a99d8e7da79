"""The observability core stands alone: what importing it loads, and where its names are spelled."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PRODUCTION = ("actors", "api", "cli", "services", "observability", "operations", "otlp_receiver", "bench")

# What a project with its own SDK setup must not pay for by importing the core.
HEAVY = (
    "opentelemetry.sdk",
    "opentelemetry.exporter",
    "opentelemetry.semconv",
    "opentelemetry.instrumentation",
    "google.protobuf",
    "requests",
    "urllib3",
    "prometheus_client",
    "grpc",
    "structlog",
    "rich",
    "observability.sdk",
)


def modules_after(statement: str) -> list[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT)
    return list(json.loads(out.stdout))


def test_importing_the_core_loads_no_sdk_exporter_protobuf_http_client_or_prometheus() -> None:
    loaded = modules_after("import observability\nfrom observability import Tracing, Metrics, install; Tracing()")
    assert [name for name in loaded if name.startswith(HEAVY)] == []
    assert "dramatiq" in loaded and "opentelemetry.trace" in loaded  # the check sees real imports


def test_the_log_middleware_loads_structlog_when_it_is_made() -> None:
    loaded = modules_after("from observability import LogContext; LogContext()")
    assert "structlog.contextvars" in loaded
    assert [name for name in loaded if name.startswith(HEAVY[:-3])] == []  # still no SDK or exporter


def string_literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_attribute_keys_span_and_metric_names_are_spelled_only_in_semconv() -> None:
    semconv = ROOT / "observability" / "semconv.py"
    found = [
        f"{path.relative_to(ROOT)}:{line}: {value!r}"
        for package in PRODUCTION
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != semconv
        for line, value in string_literals(path)
        if value.startswith(("dramatiq.", "messaging."))
    ]
    assert found == []


def test_the_literal_check_sees_a_literal(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('"""Docstring: dramatiq.message.outcome is fine here."""\nKEY = "dramatiq.message.outcome"\n')
    assert string_literals(sample) == [(2, "dramatiq.message.outcome")]
