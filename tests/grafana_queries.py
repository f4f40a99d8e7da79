"""The PromQL in our Grafana dashboards and alert rules, parsed for real, and the metrics a run really emits.

Queries are parsed with ``promql-parser`` (the Rust parser Prometheus-compatible databases use), after
Grafana's variables are replaced by values of the right shape, so a syntax error fails a test here
instead of showing "bad_data" in a panel.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import promql_parser
import yaml

ROOT = Path(__file__).resolve().parents[1]
GRAFANA_DIR = ROOT / "compose" / "grafana"
DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"
ALERTS_DIR = GRAFANA_DIR / "provisioning" / "alerting"
DATASOURCES_FILE = GRAFANA_DIR / "provisioning" / "datasources" / "datasources.yaml"

# Grafana variables, replaced by something PromQL accepts where they stand (durations, regex fragments).
_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$actor": ".*", "$queue": ".*", "$service": ".*"}


@dataclass(frozen=True)
class Query:
    """One PromQL expression and where it lives (file and panel or rule title)."""

    where: str
    expr: str


@dataclass
class Usage:
    """What a set of queries asks of the metrics: selected names with their matcher labels, grouping labels."""

    selectors: dict[str, set[str]] = field(default_factory=dict)
    grouping: set[str] = field(default_factory=set)


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair in nested dicts and lists."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def dashboard_queries() -> list[Query]:
    """Every Prometheus target expression in the provisioned dashboards (Loki's LogQL is not PromQL)."""
    queries: list[Query] = []
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                if target.get("datasource", panel.get("datasource", {})).get("uid") == "prometheus":
                    queries.append(Query(f"{path.name}: {panel['title']}", target["expr"]))
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("datasource", {}).get("uid") == "prometheus":
                match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["definition"])
                assert match, variable["definition"]
                queries.append(Query(f"{path.name}: variable {variable['name']}", match.group(1)))
    return queries


def alert_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for path in sorted(ALERTS_DIR.glob("*.yaml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            rules.extend(group["rules"])
    return rules


def alert_queries() -> list[Query]:
    return [
        Query(f"alert {rule['title']}", step["model"]["expr"])
        for rule in alert_rules()
        for step in rule["data"]
        if step["datasourceUid"] == "prometheus"
    ]


def parse(expr: str) -> Any:
    for variable, value in sorted(_VARIABLES.items(), key=lambda item: -len(item[0])):
        expr = expr.replace(variable, value)
    return promql_parser.parse(expr)


def usage(expr: str) -> Usage:
    """The metric names, matcher labels and grouping labels of one expression, from its syntax tree."""
    found = Usage()
    _visit(parse(expr), found)
    return found


def _visit(node: Any, found: Usage) -> None:
    if isinstance(node, promql_parser.VectorSelector):
        assert node.name, f"a selector without a metric name: {node}"
        found.selectors.setdefault(node.name, set()).update(m.name for m in node.matchers.matchers)
    elif isinstance(node, promql_parser.MatrixSelector):
        _visit(node.vector_selector, found)
    elif isinstance(node, promql_parser.AggregateExpr):
        if node.modifier is not None:
            found.grouping.update(node.modifier.labels)
        _visit(node.expr, found)
    elif isinstance(node, promql_parser.BinaryExpr):
        if node.modifier is not None and node.modifier.matching is not None:
            found.grouping.update(node.modifier.matching.labels)
        _visit(node.lhs, found)
        _visit(node.rhs, found)
    elif isinstance(node, promql_parser.Call):
        for argument in node.args:
            _visit(argument, found)
    elif isinstance(node, promql_parser.ParenExpr | promql_parser.UnaryExpr | promql_parser.SubqueryExpr):
        _visit(node.expr, found)


def exposition_labels(text: str) -> dict[str, set[str]]:
    """Sample name -> every label name seen on it, from Prometheus text exposition."""
    labels: dict[str, set[str]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ", line)
        assert match, line
        names = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', match.group(2) or ""))
        labels.setdefault(match.group(1), set()).update(names)
    return labels
