"""The variants of the overhead benchmark: each one a broker with a no-op and an always-failing actor.

Built in the measuring child process (``bench/harness/overhead_child.py``), from an environment the harness sets per
variant (``child_env`` in ``bench/harness/overhead_rounds.py``), so a variant measures exactly what a process
configured that way would run:

* ``plain``: Dramatiq's default middleware on Dramatiq's own broker; OpenTelemetry is never imported.
* ``sdk_floor``: ``MinimalTracing`` (``bench/workload/minimal_tracing.py``: an SDK PRODUCER span per send, a
  CONSUMER span per delivery, W3C context in ``message.options``) on an SDK ``TracerProvider`` with no span
  processor: the cost of making spans.
* ``minimal_bsp``: the same middleware with the SDK's ``BatchSpanProcessor(max_queue_size=65536)`` and its
  ``OTLPSpanExporter`` (HTTP) to the sink: the cost of a textbook setup.
* ``tracing``: our ``Tracing`` alone, on the export pipeline ``observability.sdk.configure_tracing`` builds from
  ``OTEL_*`` (``OTEL_EXPORTER_OTLP_ENDPOINT`` = the sink).
* ``tracing_inline``: the same, but ``configure_tracing(span_export="inline")``: the SDK's ``BatchSpanProcessor``
  (queue 65,536) and OTLP exporter in the worker process, so the export process is measured against the
  simplest use of the SDK with the same middleware.
* ``tracing_full``: ``Tracing`` + ``LogContext`` + ``Metrics`` (meter provider from ``configure_metrics`` with a
  Prometheus reader, as a worker tree has), same export.
* ``broker_noexport``: our broker as shipped (``actors.broker``, from ``BROKER_URL``) with every ``OTEL_*_EXPORTER``
  set to ``none``.
* ``broker_shipped``: our broker as shipped, exporting spans to the sink.

Plain-broker variants publish with ``confirm_delivery=True``, as ``actors.broker`` does. Our broker variants run on
a StubBroker through ``BROKER_URL=memory://``, which ``actors.settings`` supports.
"""

from __future__ import annotations

import itertools
import logging
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

import dramatiq

from bench.workload.minimal_tracing import MinimalTracing

__all__ = [
    "BROKER_VARIANTS",
    "EXPORTING",
    "FAIL_ACTOR",
    "FAIL_QUEUE",
    "QUEUE",
    "VARIANTS",
    "WORKER_THREADS",
    "Setup",
    "build",
]

VARIANTS = (
    "plain",
    "sdk_floor",
    "minimal_bsp",
    "tracing",
    "tracing_inline",
    "tracing_full",
    "broker_noexport",
    "broker_shipped",
)
#: Variants whose spans reach the sink: the ones the burst checks for lost spans.
EXPORTING = ("minimal_bsp", "tracing", "tracing_inline", "tracing_full", "broker_shipped")
BROKER_VARIANTS = ("broker_noexport", "broker_shipped")
QUEUE, ACTOR = "bench_tracing", "bench_noop"
FAIL_QUEUE, FAIL_ACTOR = "bench_tracing_fail", "bench_fail"
WORKER_THREADS = 8


@dataclass
class Setup:
    """A built variant: its broker, actors, and what the child needs to time and flush them."""

    broker: Any
    actors: dict[str, Any] = field(default_factory=dict)  # queue -> actor
    done: threading.Event = field(default_factory=threading.Event)
    target: list[int] = field(default_factory=lambda: [0])  # an actor sets ``done`` after running target[0] times
    provider: Any = None  # the TracerProvider spans go through (None: plain)
    created: Any = None  # a counting span processor, when asked for

    def flush(self) -> None:
        if self.provider is not None and hasattr(self.provider, "force_flush"):
            self.provider.force_flush()

    def shutdown(self) -> None:
        """Export everything still queued (the sink's count is read after the child exits)."""
        if self.provider is not None and hasattr(self.provider, "shutdown"):
            self.provider.shutdown()


def _plain_broker(rabbitmq: bool, amqp_url: str) -> Any:
    from dramatiq.middleware import default_middleware

    middleware = [factory() for factory in default_middleware]
    if rabbitmq:
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=amqp_url, confirm_delivery=True, middleware=middleware)
    from dramatiq.brokers.stub import StubBroker

    return StubBroker(middleware=middleware)


def _instrument(variant: str, broker: Any, endpoint: str) -> Any:
    """Add ``variant``'s middleware to a plain broker; returns its tracer provider (None for plain)."""
    if variant == "plain":
        return None
    if variant in ("sdk_floor", "minimal_bsp"):
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        provider = TracerProvider(resource=Resource.create({"service.name": "tracedq-bench"}))
        if variant == "minimal_bsp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint), max_queue_size=65_536))
        broker.middleware.insert(0, MinimalTracing(provider.get_tracer("bench.minimal")))
        return provider
    from observability import Metrics, Tracing, install
    from observability.sdk import configure_metrics, configure_tracing
    from observability.sdk.prometheus import PullOnlyPrometheusReader

    span_export = "inline" if variant == "tracing_inline" else "process"
    configured = configure_tracing(default_service_name="tracedq-bench", span_export=span_export)  # OTEL_* export
    install(broker, Tracing(tracer_provider=configured), log_context=variant == "tracing_full")
    if variant == "tracing_full":
        meter_provider = configure_metrics(
            default_service_name="tracedq-bench", extra_readers=[PullOnlyPrometheusReader()]
        )
        broker.add_middleware(Metrics(meter_provider=meter_provider))
    return configured


def _counting_processor() -> Any:
    from opentelemetry.sdk.trace import SpanProcessor

    class _Created(SpanProcessor):
        def __init__(self) -> None:
            self.count = 0

        def on_end(self, span: Any) -> None:
            self.count += 1

    return _Created()


def build(variant: str, *, rabbitmq: bool, amqp_url: str, endpoint: str, count_created: bool = False) -> Setup:
    """``variant``'s broker (RabbitMQ at ``amqp_url`` or a StubBroker) with the bench actors declared on it."""
    if variant in BROKER_VARIANTS:
        from opentelemetry import trace

        from actors.broker import broker  # configured from BROKER_URL and OTEL_* (child_env)

        setup = Setup(broker=broker, provider=trace.get_tracer_provider())
    else:
        # What the dramatiq CLI does for a worker process, so failures are logged as a plain worker logs them.
        from dramatiq.cli import LOGFORMAT

        logging.basicConfig(level=logging.INFO, format=LOGFORMAT, stream=sys.stderr)
        broker = _plain_broker(rabbitmq, amqp_url)
        setup = Setup(broker=broker, provider=_instrument(variant, broker, endpoint))
    if count_created and hasattr(setup.provider, "add_span_processor"):
        setup.created = _counting_processor()
        setup.provider.add_span_processor(setup.created)
    counter = itertools.count(1)
    done, target = setup.done, setup.target

    def bench_noop(i: int) -> None:
        if next(counter) == target[0]:  # itertools.count is atomic under the GIL
            done.set()

    def bench_fail(i: int) -> None:
        if next(counter) == target[0]:
            done.set()
        raise RuntimeError("bench: this actor always fails")

    declare = dramatiq.actor
    setup.actors[QUEUE] = declare(actor_name=ACTOR, queue_name=QUEUE, broker=setup.broker)(bench_noop)
    setup.actors[FAIL_QUEUE] = declare(
        actor_name=FAIL_ACTOR, queue_name=FAIL_QUEUE, broker=setup.broker, max_retries=0
    )(bench_fail)
    return setup
