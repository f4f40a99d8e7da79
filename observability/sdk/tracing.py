"""OpenTelemetry SDK setup for one process, from the standard ``OTEL_*`` variables.

``configure_tracing`` is called when the broker module is imported, which Dramatiq does in every worker
process after it starts and the periodiq scheduler does too (it never emits ``process_boot``). It is
idempotent per process. The SDK reads its own variables (``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``, ``OTEL_EXPORTER_OTLP_*``); we only read the ones
that choose an exporter and size the span queue, under their standard names.

Spans are exported by a separate process per worker process (``observability/sdk/span_pipe.py``, issue 11 §2), so
encoding and HTTP/gRPC export do not hold the worker's GIL; ``span_export="inline"`` keeps the SDK's
``BatchSpanProcessor`` in-process instead.

``configure_metrics`` also reports the health of the span export it set up (spans exported, dropped,
failed; ``observability/sdk/export_metrics.py``), so a dead collector shows on the same page as the messaging
metrics.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence

from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from observability.sdk.export_metrics import ObservedProcessor, observe_span_export
from observability.sdk.span_exporters import exporter_name, make_exporter, otlp_uses_grpc
from observability.sdk.span_fallback import CountedBatchSpanProcessor
from observability.sdk.span_pipe import PipeSpanProcessor

__all__ = [
    "configure_metrics",
    "configure_tracing",
    "make_exporter",
    "observe_configured_span_export",
    "otlp_uses_grpc",
    "process_resource",
    "span_processor_from_env",
]

_configured: dict[int, TracerProvider] = {}
_configured_metrics: dict[int, MeterProvider | None] = {}
_span_processors: dict[int, ObservedProcessor] = {}  # the processor configure_tracing added, per process


def configure_tracing(
    *,
    default_service_name: str = "tracedq",
    exporter: SpanExporter | None = None,
    environ: Mapping[str, str] | None = None,
    span_export: str = "process",
) -> TracerProvider | None:
    """Create this process's tracer provider and make it the global one. Idempotent per process.

    Args:
        default_service_name: ``service.name`` when ``OTEL_SERVICE_NAME`` and the resource attributes
            do not set one.
        exporter: overrides the exporter chosen by ``OTEL_TRACES_EXPORTER`` (tests pass one).
        environ: where ``OTEL_*`` values are read; ``os.environ`` by default.
        span_export: ``process`` (an export process per worker process, for ``OTEL_TRACES_EXPORTER=otlp``) or
            ``inline`` (the SDK's ``BatchSpanProcessor`` in this process). A given ``exporter`` is always inline.

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
    provider = TracerProvider(resource=_new_resource(default_service_name))
    processor = span_processor_from_env(env, exporter=exporter, span_export=span_export)
    if processor is not None:
        provider.add_span_processor(processor)
        _span_processors[pid] = processor
    trace.set_tracer_provider(provider)
    _configured[pid] = provider
    return provider


def configure_metrics(
    *,
    default_service_name: str = "tracedq",
    readers: list[MetricReader] | None = None,
    extra_readers: Sequence[MetricReader] = (),
    environ: Mapping[str, str] | None = None,
) -> MeterProvider | None:
    """Create this process's meter provider and make it the global one. Idempotent per process.

    ``OTEL_METRICS_EXPORTER`` picks the readers, comma-separated: ``otlp`` (push every
    ``OTEL_METRIC_EXPORT_INTERVAL`` ms over ``OTEL_EXPORTER_OTLP_[METRICS_]PROTOCOL``, HTTP by default),
    ``prometheus`` (pull: registers with ``prometheus_client.REGISTRY``; render it with
    ``observability.render_prometheus()``), ``console`` or ``none``. Unlike the SDK, the default is
    ``none``: metrics cost nothing until a deployment asks for them. The resource is the tracer
    provider's when ``configure_tracing`` ran first, so spans and metrics share ``service.instance.id``.

    Args:
        default_service_name: ``service.name`` when ``OTEL_SERVICE_NAME`` and the resource attributes
            do not set one.
        readers: override the readers chosen by ``OTEL_METRICS_EXPORTER`` (tests pass an in-memory one).
        extra_readers: readers added to the chosen ones (a worker tree's health endpoint needs a Prometheus
            reader whatever the exporter); a Prometheus one is skipped when the environment chose one.
        environ: where ``OTEL_*`` values are read; ``os.environ`` by default.

    Returns:
        The provider, or ``None`` when ``OTEL_SDK_DISABLED=true`` or no reader is configured (the global
        no-op provider then stays in place).

    Raises:
        ValueError: ``OTEL_METRICS_EXPORTER`` names an exporter we do not support.
    """
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    pid = os.getpid()
    if pid in _configured_metrics:
        return _configured_metrics[pid]
    existing = metrics.get_meter_provider()
    if isinstance(existing, MeterProvider):
        _configured_metrics[pid] = existing  # opentelemetry-instrument or a test harness set it up
        return existing
    resource = process_resource(default_service_name)
    chosen = readers if readers is not None else _metric_readers(env)
    has_prometheus = any(isinstance(reader, PrometheusMetricReader) for reader in chosen)
    chosen = [
        *chosen,
        *(r for r in extra_readers if not (has_prometheus and isinstance(r, PrometheusMetricReader))),
    ]
    if not chosen:
        _configured_metrics[pid] = None
        return None
    provider = MeterProvider(metric_readers=chosen, resource=resource)
    metrics.set_meter_provider(provider)
    _configured_metrics[pid] = provider
    observe_configured_span_export(provider)
    return provider


def observe_configured_span_export(meter_provider: MeterProvider) -> bool:
    """Report the span processor ``configure_tracing`` set up in this process through ``meter_provider``.

    ``configure_metrics`` calls it; call it yourself with a provider of your own. Once per provider.

    Args:
        meter_provider: the provider whose readers should see ``otel.sdk.processor.span.processed`` and
            ``otel.sdk.exporter.span.exported`` (see ``observability/sdk/export_metrics.py``).

    Returns:
        Whether there was a processor to observe (not when tracing is off or someone else set it up).
    """
    processor = _span_processors.get(os.getpid())
    if processor is None:
        return False
    observe_span_export(meter_provider, processor)
    return True


def _metric_readers(env: Mapping[str, str]) -> list[MetricReader]:
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader

    readers: list[MetricReader] = []
    for name in (part.strip().lower() for part in env.get("OTEL_METRICS_EXPORTER", "none").split(",")):
        if name in ("none", ""):
            continue
        if name == "console":
            readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
        elif name == "prometheus":
            from observability.sdk.prometheus import PullOnlyPrometheusReader

            readers.append(PullOnlyPrometheusReader())  # on prometheus_client.REGISTRY
        elif name == "otlp":
            if otlp_uses_grpc(env, "METRICS"):
                from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as Grpc

                readers.append(PeriodicExportingMetricReader(Grpc()))
            else:
                from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as Http

                readers.append(PeriodicExportingMetricReader(Http()))
        else:
            raise ValueError(f"OTEL_METRICS_EXPORTER={name!r} is not supported (use otlp, prometheus, console or none)")
    return readers


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
