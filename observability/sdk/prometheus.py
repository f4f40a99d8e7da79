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

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Final

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.view import View
from opentelemetry.sdk.resources import Resource
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

__all__ = [
    "PROMETHEUS_CONTENT_TYPE",
    "PullOnlyPrometheusReader",
    "merge_expositions",
    "prometheus_meter_provider",
    "render_prometheus",
]

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


def merge_expositions(snapshots: Mapping[str, bytes], *, label: str) -> bytes:
    """Merge several processes' Prometheus text into one page, each sample labelled with its process.

    A worker tree has one registry per process; the tree's single health endpoint serves them all. Each
    process's families are parsed, every sample gets ``label=<key>``, and families of the same name are
    merged, so the page keeps one ``# TYPE`` line per family, as Prometheus requires.

    Args:
        snapshots: exposition text by process key (a pid).
        label: the label name that tells the processes apart.

    Returns:
        One exposition page; families that fail to parse are skipped.
    """
    from prometheus_client import Metric
    from prometheus_client.parser import text_string_to_metric_families
    from prometheus_client.registry import Collector
    from prometheus_client.samples import Sample

    merged: dict[str, Metric] = {}
    for key, text in snapshots.items():
        try:
            families = list(text_string_to_metric_families(text.decode("utf-8", "replace")))
        except ValueError:
            continue
        for family in families:
            target = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type))
            target.samples += [
                Sample(s.name, {**s.labels, label: key}, s.value, s.timestamp, s.exemplar) for s in family.samples
            ]

    class _Merged(Collector):
        def collect(self) -> Iterator[Metric]:
            yield from merged.values()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged())
    return bytes(generate_latest(registry))
