"""The span export's own health as OpenTelemetry metrics, under the SDK self-observability conventions.

A span can be lost in two places, and the semantic conventions (``otel.sdk.*``, opentelemetry-semantic-
conventions 0.66b2, ``semconv._incubating.metrics.otel_metrics``) name a counter for each:

- ``otel.sdk.processor.span.processed``: spans the processor finished with. Without ``error.type``: handed
  to the exporter. With it: never handed over, because the queue was full (``queue_full``), the last export
  failed and the queue holds one batch until one succeeds (``export_failing``), the processor was shut
  down (``already_shutdown``) or its shutdown deadline passed (``shutdown_timeout``).
- ``otel.sdk.exporter.span.exported``: spans whose export finished. With ``error.type``: the export failed
  (an HTTP status code or an exception class, e.g. ``requests.exceptions.ConnectionError``).

Lost spans are the sum of both with ``error.type`` set. Plus the queue's size and capacity, the memory
bound while a collector is down. The instruments are observable: the processor keeps plain integers
(nothing is recorded per span) and a reader collects them when it scrapes or pushes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Final, Protocol

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.semconv._incubating.attributes.otel_attributes import (
    OTEL_COMPONENT_NAME,
    OTEL_COMPONENT_TYPE,
    OtelComponentTypeValues,
)
from opentelemetry.semconv._incubating.metrics.otel_metrics import (
    OTEL_SDK_EXPORTER_SPAN_EXPORTED,
    OTEL_SDK_PROCESSOR_SPAN_PROCESSED,
    OTEL_SDK_PROCESSOR_SPAN_QUEUE_CAPACITY,
    OTEL_SDK_PROCESSOR_SPAN_QUEUE_SIZE,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.util.types import AttributeValue

from observability.sdk.export_health import ExportCounts

__all__ = ["METER_NAME", "ObservedProcessor", "observe_span_export"]

METER_NAME: Final = "observability.export"
_SPAN: Final = "{span}"
_PROCESSOR_TYPE: Final = OtelComponentTypeValues.BATCHING_SPAN_PROCESSOR.value
_instances = itertools.count()


class ObservedProcessor(Protocol):
    """A span processor that keeps the books these metrics report (``observability.sdk.span_pipe`` and
    ``observability.sdk.inline_span_export`` have one each)."""

    max_queue_size: int
    exporter_type: str | None  # otel.component.type of its exporter; None when it is not an OTLP one

    def counts(self) -> ExportCounts: ...


def _exporter_attributes(kind: str | None) -> dict[str, AttributeValue]:
    if kind is None:
        return {OTEL_COMPONENT_NAME: f"span_exporter/{next(_instances)}"}
    return {OTEL_COMPONENT_TYPE: kind, OTEL_COMPONENT_NAME: f"{kind}/{next(_instances)}"}


def observe_span_export(meter_provider: MeterProvider, processor: ObservedProcessor) -> None:
    """Report ``processor``'s counts through ``meter_provider``, at every collection.

    Args:
        meter_provider: the provider whose readers collect them (``configure_metrics`` passes its own).
        processor: the span processor to observe.
    """
    meter = meter_provider.get_meter(METER_NAME)
    own: dict[str, AttributeValue] = {
        OTEL_COMPONENT_TYPE: _PROCESSOR_TYPE,
        OTEL_COMPONENT_NAME: f"{_PROCESSOR_TYPE}/{next(_instances)}",
    }
    exporter = _exporter_attributes(processor.exporter_type)

    def processed(options: CallbackOptions) -> Iterable[Observation]:
        counts = processor.counts()
        yield Observation(counts.submitted, own)
        for reason, spans in sorted(counts.dropped_by.items()):
            yield Observation(spans, {**own, ERROR_TYPE: reason})

    def exported(options: CallbackOptions) -> Iterable[Observation]:
        counts = processor.counts()
        yield Observation(counts.exported, exporter)
        for error_type, spans in sorted(counts.failed_by.items()):
            yield Observation(spans, {**exporter, ERROR_TYPE: error_type})

    def queue_size(options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(processor.counts().queued, own)

    def queue_capacity(options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(processor.max_queue_size, own)

    processed_text = "Spans the span processor finished with; error.type set: dropped before export."
    for name, callback, description in (
        (OTEL_SDK_PROCESSOR_SPAN_PROCESSED, processed, processed_text),
        (OTEL_SDK_EXPORTER_SPAN_EXPORTED, exported, "Spans whose export finished; error.type set: the export failed."),
    ):
        meter.create_observable_counter(name, callbacks=[callback], unit=_SPAN, description=description)
    for name, callback, description in (
        (OTEL_SDK_PROCESSOR_SPAN_QUEUE_SIZE, queue_size, "Spans in the span processor's queue."),
        (OTEL_SDK_PROCESSOR_SPAN_QUEUE_CAPACITY, queue_capacity, "The most spans the span processor's queue holds."),
    ):
        meter.create_observable_up_down_counter(name, callbacks=[callback], unit=_SPAN, description=description)
