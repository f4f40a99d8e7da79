"""The broker every process uses, built from settings with our middleware first.

Importing this module configures logging and the OpenTelemetry SDK for the process. Dramatiq imports it
in each worker process after start, and the periodiq scheduler imports it too (it never emits
``process_boot``), so setup on import covers every process kind.
"""

from __future__ import annotations

import multiprocessing
import sys
from pathlib import Path

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import default_middleware
from periodiq import PeriodiqMiddleware

from actors.settings import Settings, load_settings
from messaging.broker import TracedqBroker
from observability import Metrics, Tracing, install
from observability.sdk import (
    configure_log_export,
    configure_logging,
    configure_metrics,
    configure_tracing,
    render_prometheus,
)
from observability.sdk.prometheus import PullOnlyPrometheusReader
from worker_health.event_loop import DaemonAsyncIO
from worker_health.heartbeat import HealthServer, Heartbeat, serve_for
from worker_health.schema_gate import SchemaGate

__all__ = ["broker", "build_broker", "in_dramatiq_worker_process", "serve_health", "settings"]


def in_dramatiq_worker_process() -> bool:
    """Whether this process is (or will fork) a Dramatiq worker process running these actors.

    The API, the scheduler and the CLI import this module too. Two ways in:

    * ``dramatiq actors``: Dramatiq's main process never imports the broker; each worker process does, started
      with ``multiprocessing.Process(target=dramatiq.cli.worker_process)`` (fork or spawn), so the process's
      target says what it is.
    * ``tracedq-worker`` (``make worker``, compose, Kubernetes): its entry point lives in this package, so its
      main process imports the broker before Dramatiq forks the worker processes, which inherit what it set up.
    """
    from dramatiq.cli import worker_process

    if getattr(multiprocessing.current_process(), "_target", None) is worker_process:
        return True
    return Path(sys.argv[0]).name == "tracedq-worker" if sys.argv else False


def serve_health() -> int:
    """Dramatiq's fork function serving this broker's health endpoint: the fork imports this module for it."""
    return serve_for(broker)


def build_broker(settings: Settings) -> dramatiq.Broker:
    """A RabbitMQ broker publishing with confirms, or a StubBroker for ``memory://``, with tracing installed."""
    # PeriodiqMiddleware skips ticks older than 30 s (a scheduler that was down must not replay a backlog).
    middleware = [factory() for factory in default_middleware] + [DaemonAsyncIO(), PeriodiqMiddleware(skip_delay=30)]
    if not settings.uses_stub_broker:  # heartbeats, the health endpoint and the schema gate: dramatiq CLI only
        # No consuming before `python -m actors.db upgrade`: memory:// (tests, the demo) makes its own schema.
        middleware.append(SchemaGate(settings.database_url))
        server = None
        if settings.health_port:
            server = HealthServer(
                heartbeat_dir=Path(settings.worker_heartbeat_dir),
                broker_url=settings.broker_url,
                database_url=settings.database_url,
                host=settings.health_host,
                port=settings.health_port,
                max_age=settings.health_max_age,
            )
        middleware.append(
            Heartbeat(
                settings.worker_heartbeat_dir,
                interval=settings.worker_heartbeat_interval,
                server=server,
                fork=serve_health,
                metrics_snapshot=render_prometheus if server is not None else None,
                consumer_stall=settings.health_consumer_stall,
                time_limit_grace=settings.health_time_limit_grace,
            )
        )
    built: dramatiq.Broker
    if settings.uses_stub_broker:
        built = StubBroker(middleware=middleware)
    else:
        # confirm_delivery: .send() returns only once RabbitMQ has the message, so nothing is lost silently.
        built = TracedqBroker(
            url=settings.broker_url,
            confirm_delivery=True,
            middleware=middleware,
            queue_type=settings.rabbitmq_queue_type,
            consumer_timeout_ms=settings.rabbitmq_consumer_timeout_ms,
            capture_personal_data=settings.trace_capture_args,
        )
    install(
        built,
        Tracing(parent_policy=settings.trace_parent_policy, capture_args=settings.trace_capture_args),
    )
    built.add_middleware(Metrics())  # OTel messaging metrics; exported per OTEL_METRICS_EXPORTER
    return built


settings = load_settings()
configure_logging(
    level=settings.log_level,
    json={"json": True, "console": False, "auto": None}[settings.log_format],
    capture_personal_data=settings.trace_capture_args,
)
configure_tracing(
    default_service_name="tracedq",
    span_export=settings.span_export,
    capture_personal_data=settings.trace_capture_args,
)
# OTLP log records when OTEL_LOGS_EXPORTER=otlp
configure_log_export(default_service_name="tracedq", capture_personal_data=settings.trace_capture_args)
# A worker tree's health endpoint serves its worker processes' metrics, so each of them needs a Prometheus
# reader whatever OTEL_METRICS_EXPORTER says (OTLP to a collector can run beside it). Only they: in the API
# a second reader on the global registry was never collected by its provider and warned on every scrape.
configure_metrics(
    default_service_name="tracedq",
    extra_readers=[PullOnlyPrometheusReader()]
    if settings.health_port and not settings.uses_stub_broker and in_dramatiq_worker_process()
    else [],
)
broker = build_broker(settings)
dramatiq.set_broker(broker)
