"""Grafana's building blocks for compose/grafana/generate.py: data sources, selectors, panels, layout.

Every panel is built the same way: data sources by their provisioned UIDs, rates over ``$__rate_interval``,
latency panels with exemplars (metric -> trace in Jaeger), and actor / queue variables applied to every query.
"""

from __future__ import annotations

from typing import Any

PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}
LOKI = {"type": "loki", "uid": "loki"}
RATE = "$__rate_interval"
ACTOR = 'dramatiq_actor_name=~"$actor"'
# Dramatiq's delay (.DQ) and dead-letter (.XQ) queues sit beside each main queue.
MAIN_QUEUE = 'queue=~"$queue"'
DELAY_QUEUE = 'queue=~"$queue[.]DQ"'
DEAD_LETTER_QUEUE = 'queue=~"$queue[.]XQ"'
APP_QUEUE = 'messaging_destination_name=~"$queue"'


def target(expr: str, legend: str, ref: str, *, exemplar: bool = False) -> dict[str, Any]:
    return {"datasource": PROMETHEUS, "expr": expr, "legendFormat": legend, "refId": ref, "exemplar": exemplar}


def timeseries(
    title: str,
    targets: list[tuple[str, str]],
    *,
    unit: str = "short",
    description: str = "",
    exemplar: bool = False,
    stack: bool = False,
) -> dict[str, Any]:
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": PROMETHEUS,
        "targets": [
            target(expr, legend, chr(ord("A") + i), exemplar=exemplar) for i, (expr, legend) in enumerate(targets)
        ],
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "custom": {"stacking": {"mode": "normal" if stack else "none"}, "fillOpacity": 10 if stack else 0},
            },
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]}},
    }


def sum_by(title: str, metric: str, selector: str, label: str, **options: Any) -> dict[str, Any]:
    """A time series of ``metric`` under ``selector`` summed per ``label``, one line each, named by the label."""
    return timeseries(title, [(f"sum by ({label}) ({metric}{{{selector}}})", "{{" + label + "}}")], **options)


def stat(title: str, expr: str, *, unit: str = "short", red_above: float = 1, description: str = "") -> dict[str, Any]:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": PROMETHEUS,
        "targets": [target(expr, title, "A")],
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "thresholds": {
                    "mode": "absolute",
                    "steps": [{"color": "green", "value": None}, {"color": "red", "value": red_above}],
                },
            },
            "overrides": [],
        },
        "options": {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "background"},
    }


def logs(title: str, expr: str) -> dict[str, Any]:
    return {
        "type": "logs",
        "title": title,
        "datasource": LOKI,
        "targets": [{"datasource": LOKI, "expr": expr, "refId": "A"}],
        "options": {"showTime": True, "wrapLogMessage": True, "enableLogDetails": True, "sortOrder": "Descending"},
    }


def row(title: str) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def quantiles(metric: str, selector: str, by: str, scale: str = "") -> list[tuple[str, str]]:
    return [
        (
            f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{{{selector}}}[{RATE}]))){scale}",
            f"p{int(q * 100)} {{{{{by}}}}}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def seconds_quantiles(title: str, metric: str, selector: str, by: str, *, description: str) -> dict[str, Any]:
    """p50, p95 and p99 of a histogram in seconds, with exemplars: a slow point links to its trace."""
    return timeseries(title, quantiles(metric, selector, by), unit="s", exemplar=True, description=description)


def prometheus_variable(name: str, label: str, query: str, *, include_all: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": PROMETHEUS,
        "query": {"query": query, "refId": f"{name}-variable"},
        "definition": query,
        "refresh": 2,
        "multi": True,
        "includeAll": include_all,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def loki_service_variable() -> dict[str, Any]:
    return {
        "name": "service",
        "label": "Service",
        "type": "query",
        "datasource": LOKI,
        "query": {"type": 1, "label": "service_name", "stream": '{service_namespace="tracedq"}', "refId": "service"},
        "definition": 'label_values({service_namespace="tracedq"}, service_name)',
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".+",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def layout(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Place panels on Grafana's 24-column grid: rows full width, two panels per line, logs full width."""
    y, x = 0, 0
    placed: list[dict[str, Any]] = []
    for panel_id, panel in enumerate(panels, start=1):
        if panel["type"] in ("row", "logs") and x:
            y, x = y + 8, 0
        if panel["type"] == "row":
            width, height = 24, 1
        elif panel["type"] == "logs":
            width, height = 24, 12
        elif panel["type"] == "stat":
            width, height = 6, 4
        else:
            width, height = 12, 8
        if x + width > 24:
            y, x = y + 8, 0
        placed.append({**panel, "id": panel_id, "gridPos": {"x": x, "y": y, "w": width, "h": height}})
        x += width
        if panel["type"] in ("row", "logs") or x >= 24:
            y, x = y + height, 0
    return placed


def dashboard(uid: str, title: str, description: str, variables: list[dict[str, Any]], panels: list[dict[str, Any]]):
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["tracedq", "dramatiq"],
        "timezone": "browser",
        "schemaVersion": 41,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": variables},
        "links": [
            {"title": "tracedq dashboards", "type": "dashboards", "tags": ["tracedq"], "asDropdown": True},
        ],
        "panels": layout(panels),
    }
