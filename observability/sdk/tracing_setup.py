"""OpenTelemetry SDK setup for one process, from the standard ``OTEL_*`` variables.

``configure_tracing`` is called when the broker module is imported, which Dramatiq does in every worker
process after it starts and the periodiq scheduler does too (it never emits ``process_boot``). It is
idempotent per process. The SDK reads its own variables (``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``, ``OTEL_EXPORTER_OTLP_*``); we only read the ones
that choose an exporter and size the span queue, under their standard names.

Spans are exported by a separate process per worker process (``observability/sdk/span_pipe.py``, issue 11 §2), so
encoding and HTTP/gRPC export do not hold the worker's GIL; ``span_export="inline"`` keeps the SDK's
``BatchSpanProcessor`` in-process instead.

Metrics setup is ``observability/sdk/metrics_setup.py``; it reports the health of the span export set up here.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from observability.sdk.export_metrics import ObservedProcessor
from observability.sdk.inline_span_export import CountedBatchSpanProcessor
from observability.sdk.setup_environment import sdk_environment
from observability.sdk.span_exporters import exporter_name, make_exporter, otlp_uses_grpc
from observability.sdk.span_pipe import PipeSpanProcessor
from observability.sdk.span_redaction import RedactingSpanProcessor

__all__ = [
    "configure_tracing",
    "configured_span_processor",
    "make_exporter",
    "otlp_uses_grpc",
    "process_resource",
    "span_processor_from_env",
]

_configured: dict[int, TracerProvider] = {}
_span_processors: dict[int, ObservedProcessor] = {}  # the processor configure_tracing added, per process


def configure_tracing(
    *,
    default_service_name: str = "tracedq",
    exporter: SpanExporter | None = None,
    environ: Mapping[str, str] | None = None,
    span_export: str = "process",
    capture_personal_data: bool = False,
) -> TracerProvider | None:
    """Create this process's tracer provider and make it the global one. Idempotent per process.

    Args:
        default_service_name: ``service.name`` when ``OTEL_SERVICE_NAME`` and the resource attributes
            do not set one.
        exporter: overrides the exporter chosen by ``OTEL_TRACES_EXPORTER`` (tests pass one).
        environ: where ``OTEL_*`` values are read; ``os.environ`` by default.
        span_export: ``process`` (an export process per worker process, for ``OTEL_TRACES_EXPORTER=otlp``) or
            ``inline`` (the SDK's ``BatchSpanProcessor`` in this process). A given ``exporter`` is always inline.
        capture_personal_data: export exception texts as they are. Off: every span not made by our middleware
            keeps the type of its exceptions only (observability/sdk/span_redaction.py).

    Returns:
        The provider, or ``None`` when ``OTEL_SDK_DISABLED=true``.
    """
    env = sdk_environment(environ)
    if env is None:
        return None
    pid = os.getpid()
    if pid in _configured:
        return _configured[pid]
    existing = trace.get_tracer_provider()
    if isinstance(existing, TracerProvider):
        # Someone set the SDK up already (opentelemetry-instrument, a test harness): use theirs.
        _configured[pid] = existing
        return existing
    provider = TracerProvider(resource=_new_resource(default_service_name))
    processor = span_processor_from_env(env, exporter=exporter, span_export=span_export)
    if processor is not None:
        provider.add_span_processor(processor if capture_personal_data else RedactingSpanProcessor(processor))
        _span_processors[pid] = processor
    trace.set_tracer_provider(provider)
    _configured[pid] = provider
    return provider


def process_resource(default_service_name: str) -> Resource:
    """The tracer provider's resource when ``configure_tracing`` ran, so every signal of a process shares
    ``service.instance.id``; otherwise a new one, as ``configure_tracing`` would make it."""
    tracer_provider = trace.get_tracer_provider()
    if isinstance(tracer_provider, TracerProvider):
        return tracer_provider.resource
    return _new_resource(default_service_name)


def _new_resource(default_service_name: str) -> Resource:
    # From OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES, with a random instance id; the SDK's
    # "unknown_service:python" fallback name is replaced by ours.
    resource = Resource.create({SERVICE_INSTANCE_ID: str(uuid.uuid4())})
    if SERVICE_NAME not in resource.attributes or str(resource.attributes[SERVICE_NAME]).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: default_service_name}))
    return resource


def span_processor_from_env(
    env: Mapping[str, str], *, exporter: SpanExporter | None = None, span_export: str = "process"
) -> PipeSpanProcessor | CountedBatchSpanProcessor | None:
    """The span processor for ``env``: the export process for OTLP, unless ``span_export`` is ``inline`` or an
    ``exporter`` is given; the SDK's batch processor otherwise. Sized by the standard ``OTEL_BSP_*`` variables.

    Raises:
        ValueError: ``span_export`` or ``OTEL_TRACES_EXPORTER`` names something we do not support.
    """
    if span_export not in ("process", "inline"):
        raise ValueError(f"span export {span_export!r} is not supported (use process or inline)")
    if exporter is None and span_export == "process" and exporter_name(env) == "otlp":
        return PipeSpanProcessor(
            environ=env,
            max_queue_size=int(env.get("OTEL_BSP_MAX_QUEUE_SIZE", 65_536)),
            max_export_batch_size=int(env.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)),
            schedule_delay_millis=float(env.get("OTEL_BSP_SCHEDULE_DELAY", 1_000)),
        )
    chosen = exporter if exporter is not None else make_exporter(env)
    return None if chosen is None else CountedBatchSpanProcessor(chosen, env)


def configured_span_processor() -> ObservedProcessor | None:
    """The span processor ``configure_tracing`` added in this process, if it did (for export metrics)."""
    return _span_processors.get(os.getpid())
