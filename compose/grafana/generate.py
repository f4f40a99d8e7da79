"""Write the provisioned Grafana dashboards (compose/grafana/dashboards/*.json) from one description.

Run ``python compose/grafana/generate.py`` after editing; ``tests/unit/test_dashboards.py`` fails when the
committed JSON differs from what this writes, and checks every query against metric names scraped from a
real run. Dashboards are generated rather than hand-edited so that every panel is built the same way:
data sources by their provisioned UIDs, rates over ``$__rate_interval``, latency panels with exemplars
(metric -> trace in Jaeger), and actor / queue variables applied to every query.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))  # panels.py beside it, however this file is loaded
from panels import (
    ACTOR,
    APP_QUEUE,
    DEAD_LETTER_QUEUE,
    DELAY_QUEUE,
    MAIN_QUEUE,
    RATE,
    dashboard,
    logs,
    loki_service_variable,
    prometheus_variable,
    row,
    seconds_quantiles,
    stat,
    sum_by,
    timeseries,
)

OUT_DIR = Path(__file__).parent / "dashboards"


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
            sum_by(
                "In flight by actor",
                "dramatiq_messages_in_flight",
                ACTOR,
                "dramatiq_actor_name",
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
            sum_by(
                "Ready messages by queue",
                "rabbitmq_detailed_queue_messages_ready",
                MAIN_QUEUE,
                "queue",
            ),
            sum_by(
                "Unacked (prefetched or in progress) by queue",
                "rabbitmq_detailed_queue_messages_unacked",
                MAIN_QUEUE,
                "queue",
            ),
            sum_by(
                "Delay queues (.DQ): retries and scheduled messages",
                "rabbitmq_detailed_queue_messages",
                DELAY_QUEUE,
                "queue",
                description="Workers hold up to threads x 1000 delayed messages unacked until their eta.",
            ),
            sum_by(
                "Dead-letter queues (.XQ)",
                "rabbitmq_detailed_queue_messages",
                DEAD_LETTER_QUEUE,
                "queue",
            ),
            row("Consumers and flow"),
            sum_by(
                "Consumers by queue",
                "rabbitmq_detailed_queue_consumers",
                MAIN_QUEUE,
                "queue",
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
