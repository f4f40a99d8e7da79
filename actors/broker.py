"""The broker every process uses, built from settings with our middleware first.

Importing this module configures logging and the OpenTelemetry SDK for the process. Dramatiq imports it
in each worker process after start, and the periodiq scheduler imports it too (it never emits
``process_boot``), so setup on import covers every process kind.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AsyncIO, default_middleware
from periodiq import PeriodiqMiddleware

from actors.rabbitmq import Broker as RabbitmqBroker
from actors.settings import Settings, load_settings
from observability import Tracing, configure_logging, configure_tracing, install

__all__ = ["broker", "build_broker", "settings"]


def build_broker(settings: Settings) -> dramatiq.Broker:
    """A RabbitMQ broker publishing with confirms, or a StubBroker for ``memory://``, with tracing installed."""
    # PeriodiqMiddleware skips ticks older than 30 s (a scheduler that was down must not replay a backlog).
    middleware = [factory() for factory in default_middleware] + [AsyncIO(), PeriodiqMiddleware(skip_delay=30)]
    built: dramatiq.Broker
    if settings.uses_stub_broker:
        built = StubBroker(middleware=middleware)
    else:
        # confirm_delivery: .send() returns only once RabbitMQ has the message, so nothing is lost silently.
        built = RabbitmqBroker(url=settings.broker_url, confirm_delivery=True, middleware=middleware)
    install(
        built,
        Tracing(parent_policy=settings.trace_parent_policy, capture_args=settings.trace_capture_args),
    )
    return built


settings = load_settings()
configure_logging(
    level=settings.log_level,
    json={"json": True, "console": False, "auto": None}[settings.log_format],
)
configure_tracing(default_service_name="tracedq")
broker = build_broker(settings)
dramatiq.set_broker(broker)
