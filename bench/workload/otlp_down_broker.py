"""The workload of ``bench/otlp_down.py``: a StubBroker traced as a deployed worker is, exporting to one endpoint.

Dramatiq's default middleware and ``observability.install(broker, Tracing(tracer_provider=...))``, the provider
exporting through ``span_processor_from_env`` (our ``PipeSpanProcessor``: an export process with the SDK's
OTLP/HTTP exporter), and a no-op actor. The endpoint is the variant: the sink, a refused port, or a blackhole.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dramatiq.brokers.stub import StubBroker
    from opentelemetry.sdk.trace import TracerProvider

    from observability.sdk.span_pipe import PipeSpanProcessor

__all__ = ["QUEUE", "VARIANTS", "WORKER_THREADS", "TracedStub", "build"]

VARIANTS = ("sink", "refused", "blackhole")
QUEUE = "bench_otlp_down"
WORKER_THREADS = 8


@dataclass
class TracedStub:
    """A built workload: the broker, the span pipeline it exports through, and the actor to send to."""

    broker: StubBroker
    provider: TracerProvider
    processor: PipeSpanProcessor
    actor: Any


def build(endpoint: str) -> TracedStub:
    """The broker, its provider exporting to ``endpoint`` through our export process, and the no-op actor."""
    import dramatiq
    from dramatiq.brokers.stub import StubBroker
    from dramatiq.middleware import default_middleware
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    from observability import Tracing, install
    from observability.sdk.span_pipe import PipeSpanProcessor
    from observability.sdk.tracing_setup import span_processor_from_env

    provider = TracerProvider(resource=Resource.create({"service.name": "tracedq-bench-otlp-down"}))
    environ = {**os.environ, "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint}
    processor = span_processor_from_env(environ)
    assert isinstance(processor, PipeSpanProcessor)
    provider.add_span_processor(processor)
    broker = StubBroker(middleware=[factory() for factory in default_middleware])
    install(broker, Tracing(tracer_provider=provider))

    def bench_noop(i: int) -> None:
        pass

    actor = dramatiq.actor(actor_name="bench_noop", queue_name=QUEUE, broker=broker)(bench_noop)
    return TracedStub(broker=broker, provider=provider, processor=processor, actor=actor)
