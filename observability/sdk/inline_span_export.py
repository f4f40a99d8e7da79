"""The in-process export: the SDK's ``BatchSpanProcessor`` and exporter, its results kept in our books.

Used when the export process cannot be started (``observability/sdk/span_pipe.py`` falls back to it and says so
once), and chosen outright with ``SPAN_EXPORT=inline`` (or when an exporter object is passed in). Its exports are
counted in the same ``ExportHealth`` as the export process's answers, so the export metrics keep their meaning;
spans the SDK's processor drops itself (its queue full) are not seen here (the SDK logs them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from observability.sdk.export_health import ExportCounts, ExportFailure, ExportHealth, error_type_of
from observability.sdk.span_exporters import component_type_of

__all__ = ["CountedBatchSpanProcessor", "CountedExporter"]


class CountedExporter(SpanExporter):
    """Delegates to ``exporter`` and records each export's result in ``health``."""

    def __init__(self, exporter: SpanExporter, health: ExportHealth) -> None:
        self.exporter = exporter
        self._health = health

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.exporter.export(spans)
        except Exception as exc:
            self._health.failed_export(len(spans), ExportFailure(error_type_of(exc), f"{error_type_of(exc)}: {exc}"))
            self._health.report()
            return SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self._health.succeeded(len(spans))
        else:
            name = type(self.exporter).__name__
            self._health.failed_export(len(spans), ExportFailure("_OTHER", f"{name} returned {result.name}"))
        self._health.report()  # on the SDK's export thread, never on a worker thread
        return result

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.exporter.force_flush(timeout_millis)


class CountedBatchSpanProcessor(BatchSpanProcessor):
    """The SDK's batch processor, its exports counted in ``health``, with a queue of 65,536 spans by default (the
    SDK's 2,048 drops most of a 20,000-span burst on two cores); the other ``OTEL_BSP_*`` variables as the SDK
    reads them.

    Args:
        exporter: the SDK exporter.
        env: where ``OTEL_BSP_MAX_QUEUE_SIZE`` is read.
        health: the books to keep (the export process's, when this is its fallback); new ones by default.
    """

    def __init__(self, exporter: SpanExporter, env: Mapping[str, str], *, health: ExportHealth | None = None) -> None:
        self._health = health or ExportHealth(log_interval=10.0, backoff=1.0, max_backoff=10.0)
        self.max_queue_size = int(env.get("OTEL_BSP_MAX_QUEUE_SIZE", 65_536))
        self.exporter_type = component_type_of(exporter)
        super().__init__(CountedExporter(exporter, self._health), max_queue_size=self.max_queue_size)

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None and span.context.trace_flags.sampled:
            self._health.submit(1)
        super().on_end(span)

    def counts(self) -> ExportCounts:
        """The counts; ``queued`` is every span handed over and not yet exported or failed, including any the
        SDK's processor dropped itself."""
        counts = self._health.counts(0)
        return dataclasses.replace(counts, queued=counts.submitted - counts.exported - counts.failed)
