"""OpenTelemetry metrics setup for one process, from ``OTEL_METRICS_EXPORTER`` and the other standard variables.

Apart from tracing setup (``observability/sdk/tracing_setup.py``) so a process that only traces never loads the
metrics SDK's readers or prometheus_client. ``configure_metrics`` also reports the health of the span export
``configure_tracing`` set up (spans exported, dropped, failed; ``observability/sdk/export_metrics.py``), so a dead
collector shows on the same page as the messaging metrics.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader

from observability.sdk.export_metrics import observe_span_export
from observability.sdk.setup_environment import sdk_environment
from observability.sdk.span_exporters import otlp_uses_grpc
from observability.sdk.tracing_setup import configured_span_processor, process_resource

__all__ = ["configure_metrics", "observe_configured_span_export"]

_configured_metrics: dict[int, MeterProvider | None] = {}


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
    ``observability.sdk.render_prometheus()``), ``console`` or ``none``. Unlike the SDK, the default is
    ``none``: metrics cost nothing until a deployment asks for them. The resource is the tracer
    provider's when ``configure_tracing`` ran first, so spans and metrics share ``service.instance.id``.

    Args:
        default_service_name: ``service.name`` when ``OTEL_SERVICE_NAME`` and the resource attributes
            do not set one.
        readers: override the readers chosen by ``OTEL_METRICS_EXPORTER`` (tests pass an in-memory one).
        extra_readers: readers added to the chosen ones (a worker tree's health endpoint needs a Prometheus
            reader whatever the exporter); a Prometheus one is skipped when the environment chose one. Every
            extra reader not used (skipped, or the process already configured) is shut down: a Prometheus
            reader registers with its registry when built, and one left there without a provider logs
            "Cannot call collect on a MetricReader until it is registered" on every scrape.
        environ: where ``OTEL_*`` values are read; ``os.environ`` by default.

    Returns:
        The provider, or ``None`` when ``OTEL_SDK_DISABLED=true`` or no reader is configured (the global
        no-op provider then stays in place).

    Raises:
        ValueError: ``OTEL_METRICS_EXPORTER`` names an exporter we do not support.
    """
    env = sdk_environment(environ)
    if env is None:
        _discard(extra_readers)
        return None
    pid = os.getpid()
    if pid in _configured_metrics:
        _discard(extra_readers)
        return _configured_metrics[pid]
    existing = metrics.get_meter_provider()
    if isinstance(existing, MeterProvider):
        _discard(extra_readers)
        _configured_metrics[pid] = existing  # opentelemetry-instrument or a test harness set it up
        return existing
    resource = process_resource(default_service_name)
    chosen = readers if readers is not None else _metric_readers(env)
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    has_prometheus = any(isinstance(reader, PrometheusMetricReader) for reader in chosen)
    skipped = [r for r in extra_readers if has_prometheus and isinstance(r, PrometheusMetricReader)]
    _discard(skipped)
    chosen = [*chosen, *(r for r in extra_readers if r not in skipped)]
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
    processor = configured_span_processor()
    if processor is None:
        return False
    observe_span_export(meter_provider, processor)
    return True


def _discard(readers: Sequence[MetricReader]) -> None:
    """Shut down readers no provider will own (a Prometheus one thereby leaves its registry)."""
    for reader in readers:
        reader.shutdown()


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
