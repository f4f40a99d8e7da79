"""Dependency rules import-linter cannot express: services use the OpenTelemetry API, never the SDK."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

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


# Every package of the repository; import-linter's acyclic_siblings contract checks the modules inside each
# one, this checks across them too (a top-level package has no common ancestor for import-linter to name).
PACKAGES = ("actors", "messaging", "worker_health", "services", "observability", "cli", "api", "bench", "tests")


def _import_cycles(packages: tuple[str, ...]) -> list[list[str]]:
    """Strongly connected groups of more than one module in the import graph of ``packages`` (Tarjan)."""
    import grimp

    graph = grimp.build_graph(*packages)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return cycles


def test_no_module_of_the_repository_imports_itself_in_a_circle() -> None:
    """No import cycle, deferred imports and ``TYPE_CHECKING`` ones included: a cycle is a layer in the wrong place."""
    assert _import_cycles(PACKAGES) == []


def test_the_cycle_check_finds_a_cycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: two modules importing each other lazily are found."""
    package = tmp_path / "circular"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from circular import b\n")
    (package / "b.py").write_text("import circular.a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _import_cycles(("circular",)) == [["circular.a", "circular.b"]]
