"""OpenTelemetry SDK setup for one process, from the standard ``OTEL_*`` variables.

``configure_tracing`` is called when the broker module is imported, which Dramatiq does in every worker
process after it starts and the periodiq scheduler does too (it never emits ``process_boot``). It is
idempotent per process. The SDK reads its own variables (``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``, ``OTEL_EXPORTER_OTLP_*``); we only read the ones
that choose an exporter and size the span queue, under their standard names.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter

from observability.export import FastOTLPSpanExporter, QueuedSpanProcessor

__all__ = ["configure_tracing", "make_exporter", "span_processor_from_env"]

_configured: dict[int, TracerProvider] = {}


def configure_tracing(
    *,
    default_service_name: str = "tracedq",
    exporter: SpanExporter | None = None,
    environ: Mapping[str, str] | None = None,
) -> TracerProvider | None:
    """Create this process's tracer provider and make it the global one. Idempotent per process.

    Args:
        default_service_name: ``service.name`` when ``OTEL_SERVICE_NAME`` and the resource attributes
            do not set one.
        exporter: overrides the exporter chosen by ``OTEL_TRACES_EXPORTER`` (tests pass one).
        environ: where ``OTEL_*`` values are read; ``os.environ`` by default.

    Returns:
        The provider, or ``None`` when ``OTEL_SDK_DISABLED=true``.
    """
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    pid = os.getpid()
    if pid in _configured:
        return _configured[pid]
    existing = trace.get_tracer_provider()
    if isinstance(existing, TracerProvider):
        # Someone set the SDK up already (opentelemetry-instrument, a test harness): use theirs.
        _configured[pid] = existing
        return existing
    resource = Resource.create({SERVICE_INSTANCE_ID: str(uuid.uuid4())})
    if SERVICE_NAME not in resource.attributes or str(resource.attributes[SERVICE_NAME]).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: default_service_name}))
    provider = TracerProvider(resource=resource)
    chosen = exporter if exporter is not None else make_exporter(env)
    if chosen is not None:
        provider.add_span_processor(span_processor_from_env(chosen, env))
    trace.set_tracer_provider(provider)
    _configured[pid] = provider
    return provider


def make_exporter(env: Mapping[str, str]) -> SpanExporter | None:
    """The exporter named by ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console`` or ``none``; ``otlp`` by default)."""
    name = env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if name == "none":
        return None
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER={name!r} is not supported (use otlp, console or none)")
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    return FastOTLPSpanExporter()


def span_processor_from_env(exporter: SpanExporter, env: Mapping[str, str]) -> SpanProcessor:
    """Our burst-proof processor, sized by the standard ``OTEL_BSP_*`` variables when they are set."""
    return QueuedSpanProcessor(
        exporter,
        max_queue_size=int(env.get("OTEL_BSP_MAX_QUEUE_SIZE", 65_536)),
        max_export_batch_size=int(env.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)),
        schedule_delay_millis=float(env.get("OTEL_BSP_SCHEDULE_DELAY", 1_000)),
    )
