"""Write the provisioned Grafana dashboards (compose/grafana/dashboards/*.json) from one description.

Run ``python compose/grafana/generate.py`` after editing; ``tests/unit/test_dashboards.py`` fails when the
committed JSON differs from what this writes, and checks every query against metric names scraped from a
real run. Dashboards are generated rather than hand-edited so that every panel is built the same way:
data sources by their provisioned UIDs, rates over ``$__rate_interval``, latency panels with exemplars
(metric -> trace in Jaeger), and actor / queue variables applied to every query.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).parent / "dashboards"
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


def actors_dashboard() -> dict[str, Any]:
    processed = f"messaging_process_duration_seconds_count{{{ACTOR}}}"
    failed = f'messaging_process_duration_seconds_count{{{ACTOR},error_type!=""}}'
    return dashboard(
        "tracedq-actors",
        "tracedq / Actors",
        "Per actor: rate, errors, duration percentiles, retries, dead letters; the services' logs.",
        [
            prometheus_variable(
                "actor", "Actor", "label_values(messaging_client_consumed_messages_total, dramatiq_actor_name)"
            ),
            loki_service_variable(),
        ],
        [
            row("Rate and errors"),
            timeseries(
                "Processed / s by actor and outcome",
                [
                    (
                        f"sum by (dramatiq_actor_name, dramatiq_message_outcome) (rate({processed}[{RATE}]))",
                        "{{dramatiq_actor_name}} {{dramatiq_message_outcome}}",
                    )
                ],
                unit="ops",
                stack=True,
                description="Every delivery, counted when it settles (ack or nack).",
            ),
            timeseries(
                "Error ratio by actor",
                [
                    (
                        f"sum by (dramatiq_actor_name) (rate({failed}[{RATE}]))"
                        f" / sum by (dramatiq_actor_name) (rate({processed}[{RATE}]))",
                        "{{dramatiq_actor_name}}",
                    )
                ],
                unit="percentunit",
                description="Attempts that raised (retried or dead-lettered) over all attempts. Retry() and "
                "exceptions listed in `throws` are not errors.",
            ),
            timeseries(
                "Errors / s by actor and exception",
                [
                    (
                        f"sum by (dramatiq_actor_name, error_type) (rate({failed}[{RATE}]))",
                        "{{dramatiq_actor_name}} {{error_type}}",
                    )
                ],
                unit="ops",
            ),
            timeseries(
                "In flight by actor",
                [(f"sum by (dramatiq_actor_name) (dramatiq_messages_in_flight{{{ACTOR}}})", "{{dramatiq_actor_name}}")],
            ),
            row("Duration"),
            seconds_quantiles(
                "Processing duration by actor (p50 / p95 / p99)",
                "messaging_process_duration_seconds",
                ACTOR,
                "dramatiq_actor_name",
                description="Exemplars link a slow point to its trace in Jaeger.",
            ),
            timeseries(
                "Publish duration by queue (p95)",
                [
                    (
                        "histogram_quantile(0.95, sum by (le, messaging_destination_name) "
                        f"(rate(messaging_client_operation_duration_seconds_bucket{{{ACTOR}}}[{RATE}])))",
                        "{{messaging_destination_name}}",
                    )
                ],
                unit="s",
                exemplar=True,
                description="From .send() to the broker's confirm, retries after a reconnect included.",
            ),
            row("Retries and dead letters"),
            timeseries(
                "Retries / s by actor",
                [
                    (
                        f"sum by (dramatiq_actor_name) (rate(dramatiq_messages_retried_total{{{ACTOR}}}[{RATE}]))",
                        "{{dramatiq_actor_name}}",
                    )
                ],
                unit="ops",
            ),
            timeseries(
                "Dead letters / s by actor and reason",
                [
                    (
                        "sum by (dramatiq_actor_name, dramatiq_message_dead_letter_reason) "
                        f"(rate(dramatiq_messages_dead_lettered_total[{RATE}]))",
                        "{{dramatiq_actor_name}} {{dramatiq_message_dead_letter_reason}}",
                    )
                ],
                unit="ops",
                description="Unknown actors count here without an actor name (it came from the wire).",
            ),
            timeseries(
                "Redeliveries and skips / s by actor",
                [
                    (
                        f"sum by (dramatiq_actor_name) (rate(dramatiq_messages_redelivered_total{{{ACTOR}}}[{RATE}]))",
                        "redelivered {{dramatiq_actor_name}}",
                    ),
                    (
                        f"sum by (dramatiq_actor_name) (rate(dramatiq_messages_skipped_total{{{ACTOR}}}[{RATE}]))",
                        "skipped {{dramatiq_actor_name}}",
                    ),
                ],
                unit="ops",
                description="Redelivered: a worker died or lost its connection mid-message. Skipped: a middleware "
                "(AgeLimit, a stale periodic tick) dropped it.",
            ),
            timeseries(
                "Published / s by queue",
                [
                    (
                        "sum by (messaging_destination_name, error_type) "
                        f"(rate(messaging_client_sent_messages_total[{RATE}]))",
                        "{{messaging_destination_name}} {{error_type}}",
                    )
                ],
                unit="ops",
                description="A series with an error_type is a publish the broker refused or never confirmed.",
            ),
            row("Logs"),
            logs("Logs of $service", '{service_namespace="tracedq", service_name=~"$service"}'),
            logs(
                "Errors of $service",
                '{service_namespace="tracedq", service_name=~"$service"} | severity_text=~"ERROR|FATAL|CRITICAL"',
            ),
        ],
    )


def queues_dashboard() -> dict[str, Any]:
    return dashboard(
        "tracedq-queues",
        "tracedq / Queues",
        "Per queue: depth (main, delay, dead letter), consumers, wait; from RabbitMQ and from the workers.",
        [
            prometheus_variable(
                "queue",
                "Queue",
                'label_values(rabbitmq_detailed_queue_messages_ready{queue!~".*[.](DQ|XQ)"}, queue)',
            )
        ],
        [
            stat(
                "Dead letters waiting",
                f"sum(rabbitmq_detailed_queue_messages{{{DEAD_LETTER_QUEUE}}})",
                description="Messages in the .XQ queues: inspect with `tracedq dlq list <queue>`.",
            ),
            stat("Ready", f"sum(rabbitmq_detailed_queue_messages_ready{{{MAIN_QUEUE}}})", red_above=1000),
            stat("Consumers", f"sum(rabbitmq_detailed_queue_consumers{{{MAIN_QUEUE}}})", red_above=10_000),
            stat(
                "Worker heartbeat age (max)",
                "max(tracedq_worker_heartbeat_age_seconds)",
                unit="s",
                red_above=30,
                description="From the worker tree's health endpoint: a worker process that stopped beating is hung.",
            ),
            row("Depth"),
            timeseries(
                "Ready messages by queue",
                [(f"sum by (queue) (rabbitmq_detailed_queue_messages_ready{{{MAIN_QUEUE}}})", "{{queue}}")],
            ),
            timeseries(
                "Unacked (prefetched or in progress) by queue",
                [(f"sum by (queue) (rabbitmq_detailed_queue_messages_unacked{{{MAIN_QUEUE}}})", "{{queue}}")],
            ),
            timeseries(
                "Delay queues (.DQ): retries and scheduled messages",
                [(f"sum by (queue) (rabbitmq_detailed_queue_messages{{{DELAY_QUEUE}}})", "{{queue}}")],
                description="Workers hold up to threads x 1000 delayed messages unacked until their eta.",
            ),
            timeseries(
                "Dead-letter queues (.XQ)",
                [(f"sum by (queue) (rabbitmq_detailed_queue_messages{{{DEAD_LETTER_QUEUE}}})", "{{queue}}")],
            ),
            row("Consumers and flow"),
            timeseries(
                "Consumers by queue",
                [(f"sum by (queue) (rabbitmq_detailed_queue_consumers{{{MAIN_QUEUE}}})", "{{queue}}")],
                description="0 on a main queue means nothing processes it: see the 'no consumer' alert.",
            ),
            timeseries(
                "Published vs consumed / s by queue",
                [
                    (
                        "sum by (messaging_destination_name) "
                        f"(rate(messaging_client_sent_messages_total{{{APP_QUEUE}}}[{RATE}]))",
                        "published {{messaging_destination_name}}",
                    ),
                    (
                        "sum by (messaging_destination_name) "
                        f"(rate(messaging_client_consumed_messages_total{{{APP_QUEUE}}}[{RATE}]))",
                        "consumed {{messaging_destination_name}}",
                    ),
                ],
                unit="ops",
            ),
            seconds_quantiles(
                "Queue wait by queue (p50 / p95 / p99)",
                "dramatiq_message_queue_wait_seconds",
                APP_QUEUE,
                "messaging_destination_name",
                description="From enqueue (or a delayed message's eta) to the start of processing.",
            ),
            timeseries(
                "Telemetry lost: spans / s by reason",
                [
                    (
                        'sum by (error_type) (rate(otel_sdk_processor_span_processed_total{error_type!=""}'
                        f"[{RATE}]))",
                        "not exported: {{error_type}}",
                    ),
                    (
                        f'sum by (error_type) (rate(otel_sdk_exporter_span_exported_total{{error_type!=""}}[{RATE}]))',
                        "export failed: {{error_type}}",
                    ),
                ],
                unit="ops",
                description="Spans the app produced but Jaeger will never see: the collector is down or the queue "
                "overflowed. Messages are unaffected; their traces are incomplete.",
            ),
            timeseries(
                "Worker heartbeat age by process",
                [("max by (pid, state) (tracedq_worker_heartbeat_age_seconds)", "pid {{pid}} {{state}}")],
                unit="s",
            ),
        ],
    )


def latency_dashboard() -> dict[str, Any]:
    e2e = "dramatiq_message_end_to_end_duration_seconds"
    return dashboard(
        "tracedq-latency",
        "tracedq / End-to-end latency",
        "From .send() to the final outcome, and where the time goes: queue wait, processing, publishing.",
        [
            prometheus_variable("actor", "Actor", f"label_values({e2e}_count, dramatiq_actor_name)"),
        ],
        [
            seconds_quantiles(
                "End to end, successes (p50 / p95 / p99)",
                e2e,
                f'{ACTOR},dramatiq_message_outcome="success"',
                "dramatiq_actor_name",
                description="From the first send to success: queue waits, retries' backoff and delays included.",
            ),
            timeseries(
                "End to end, dead letters (p95)",
                [
                    (
                        f"histogram_quantile(0.95, sum by (le, dramatiq_actor_name) (rate({e2e}_bucket"
                        f'{{{ACTOR},dramatiq_message_outcome="dead_lettered"}}[{RATE}])))',
                        "{{dramatiq_actor_name}}",
                    )
                ],
                unit="s",
                description="How long a message is tried before it is given up on.",
            ),
            timeseries(
                "Where the time goes (p95): queue wait vs processing",
                [
                    (
                        "histogram_quantile(0.95, sum by (le) "
                        f"(rate(dramatiq_message_queue_wait_seconds_bucket{{{ACTOR}}}[{RATE}])))",
                        "queue wait",
                    ),
                    (
                        "histogram_quantile(0.95, sum by (le) "
                        f"(rate(messaging_process_duration_seconds_bucket{{{ACTOR}}}[{RATE}])))",
                        "processing",
                    ),
                    (
                        f"histogram_quantile(0.95, sum by (le) (rate({e2e}_bucket{{{ACTOR}}}[{RATE}])))",
                        "end to end",
                    ),
                ],
                unit="s",
                exemplar=True,
            ),
            timeseries(
                "Completed / s by actor and outcome",
                [
                    (
                        "sum by (dramatiq_actor_name, dramatiq_message_outcome) "
                        f"(rate({e2e}_count{{{ACTOR}}}[{RATE}]))",
                        "{{dramatiq_actor_name}} {{dramatiq_message_outcome}}",
                    )
                ],
                unit="ops",
            ),
            timeseries(
                "API request duration by path (p95)",
                [
                    (
                        "histogram_quantile(0.95, sum by (le, http_method, http_target) "
                        f'(rate(http_server_duration_milliseconds_bucket{{http_method="POST"}}[{RATE}])))',
                        "{{http_method}} {{http_target}}",
                    )
                ],
                unit="ms",
                exemplar=True,
                description="The producer API: validation plus the publish confirm (202 Accepted).",
            ),
        ],
    )


DASHBOARDS = {
    "tracedq-actors.json": actors_dashboard,
    "tracedq-queues.json": queues_dashboard,
    "tracedq-latency.json": latency_dashboard,
}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"


def main() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, build in DASHBOARDS.items():
        (OUT_DIR / name).write_text(render(build), encoding="utf-8")
        print(f"wrote {OUT_DIR / name}")


if __name__ == "__main__":
    main()
