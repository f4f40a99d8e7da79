"""Dependency rules import-linter cannot express: services use the OpenTelemetry API, never the SDK."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(package: str) -> set[str]:
    names: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
    return names


def test_services_never_import_the_otel_sdk_or_dramatiq() -> None:
    """services/ may use ``opentelemetry.trace`` (the API) but not ``opentelemetry.sdk``, dramatiq or pika."""
    imported = imported_modules("services")
    assert "opentelemetry.trace" in imported or "opentelemetry" in imported
    forbidden = {name for name in imported if name.startswith(("opentelemetry.sdk", "dramatiq", "pika", "periodiq"))}
    assert forbidden == set()


def test_observability_knows_nothing_of_actors_or_services() -> None:
    """observability/ gets every value as an argument; it never imports our other packages."""
    imported = imported_modules("observability")
    assert {name for name in imported if name.split(".")[0] in ("actors", "services")} == set()
