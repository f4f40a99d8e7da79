"""Expose this process's OpenTelemetry metrics in the Prometheus text format, for a pull-based scrape.

The API serves the exposition at ``GET /metrics`` and a worker's health server at its own port; both
get their bytes from the renderer :func:`prometheus_meter_provider` returns.

One registry per process: a ``dramatiq`` worker runs several forked worker processes (``-p``), each with
its own provider and registry, and none sees the others' counts. Either give each process its own port
and let Prometheus scrape every one (sum over ``instance`` in queries), or, simpler with ``-p > 1``,
push over OTLP to the collector (``OTEL_METRICS_EXPORTER=otlp``) and let the collector expose one
endpoint. There is no multiprocess directory, unlike ``prometheus_client``'s multiprocess mode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.view import View
from opentelemetry.sdk.resources import Resource
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

__all__ = ["PROMETHEUS_CONTENT_TYPE", "PullOnlyPrometheusReader", "prometheus_meter_provider", "render_prometheus"]

PROMETHEUS_CONTENT_TYPE: Final[str] = CONTENT_TYPE_LATEST
"""The ``Content-Type`` of the exposition: ``text/plain; version=...; charset=utf-8``."""


class PullOnlyPrometheusReader(PrometheusMetricReader):
    """A ``PrometheusMetricReader`` whose ``force_flush`` does nothing: only a scrape collects.

    The stock reader's ``force_flush`` (``MeterProvider.force_flush``, e.g. ``Metrics.flush`` when a
    worker stops) runs ``collect()``, which queues a batch the collector never drops: the next scrape
    then renders every sample twice, which Prometheus rejects as duplicate series
    (opentelemetry-exporter-prometheus 0.66b2).
    """

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True


def prometheus_meter_provider(
    *,
    resource: Resource | None = None,
    registry: CollectorRegistry | None = None,
    views: Sequence[View] = (),
) -> tuple[MeterProvider, Callable[[], bytes]]:
    """Build a meter provider read by Prometheus, and the function that renders its exposition.

    The provider is not made global: pass it to ``Metrics(meter_provider=...)`` or call
    ``opentelemetry.metrics.set_meter_provider`` yourself (``configure_metrics`` does).

    Args:
        resource: the provider's resource; the SDK default (``OTEL_SERVICE_NAME``, ...) otherwise. It is
            exposed as the ``target_info`` metric.
        registry: the ``prometheus_client`` registry the reader registers with; a new, private one by
            default, so building two providers in one process (tests) never clashes. Pass
            ``prometheus_client.REGISTRY`` to share it with ``prometheus_client``'s own helpers.
        views: SDK views, e.g. to drop an attribute or change buckets.

    Returns:
        The provider and a callable returning the exposition bytes (serve with
        :data:`PROMETHEUS_CONTENT_TYPE`). Each call collects the current values.
    """
    registry = CollectorRegistry(auto_describe=True) if registry is None else registry
    reader = PullOnlyPrometheusReader(registry=registry)
    provider = MeterProvider(metric_readers=[reader], resource=resource or Resource.create(), views=list(views))

    def render() -> bytes:
        return render_prometheus(registry)

    return provider, render


def render_prometheus(registry: CollectorRegistry | None = None) -> bytes:
    """Render ``registry`` (``prometheus_client``'s global one by default) in the text exposition format.

    Args:
        registry: the registry to collect from.

    Returns:
        The exposition, UTF-8 bytes.
    """
    return generate_latest(REGISTRY if registry is None else registry)
