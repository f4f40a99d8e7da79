"""The instruments of the ``Metrics`` middleware: names, units and buckets from the messaging conventions."""

from __future__ import annotations

from typing import Final

from opentelemetry.metrics import Meter

from observability import semconv

__all__ = ["DURATION_BUCKETS", "QUEUE_WAIT_BUCKETS", "Instruments"]

# The messaging conventions' advisory boundaries for both duration histograms, in seconds.
DURATION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
# Queue wait includes backlogs and scheduled etas: minutes to an hour matter too.
QUEUE_WAIT_BUCKETS: Final = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class Instruments:
    """Every instrument ``Metrics`` records to, created once from one meter."""

    def __init__(self, meter: Meter) -> None:
        message = "{message}"
        self.sent = meter.create_counter(
            semconv.METRIC_SENT, unit=message, description="Messages the producer attempted to send."
        )
        self.consumed = meter.create_counter(
            semconv.METRIC_CONSUMED, unit=message, description="Messages delivered to the worker."
        )
        self.operation_duration = meter.create_histogram(
            semconv.METRIC_OPERATION_DURATION,
            unit="s",
            description="Duration of publish operations.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.process_duration = meter.create_histogram(
            semconv.METRIC_PROCESS_DURATION,
            unit="s",
            description="Duration of processing one delivery, by outcome.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.retried = meter.create_counter(
            semconv.METRIC_RETRIED, unit=message, description="Failed attempts re-enqueued by Retries (once each)."
        )
        self.dead_lettered = meter.create_counter(
            semconv.METRIC_DEAD_LETTERED, unit=message, description="Messages moved to the dead-letter queue."
        )
        self.skipped = meter.create_counter(
            semconv.METRIC_SKIPPED, unit=message, description="Deliveries skipped by a middleware."
        )
        self.redelivered = meter.create_counter(
            semconv.METRIC_REDELIVERED, unit=message, description="Deliveries RabbitMQ flagged as redelivered."
        )
        self.in_flight = meter.create_up_down_counter(
            semconv.METRIC_IN_FLIGHT, unit=message, description="Messages being processed right now."
        )
        self.queue_wait = meter.create_histogram(
            semconv.METRIC_QUEUE_WAIT,
            unit="s",
            description="From enqueue (or eta) to processing start.",
            explicit_bucket_boundaries_advisory=QUEUE_WAIT_BUCKETS,
        )
        self.end_to_end = meter.create_histogram(
            semconv.METRIC_END_TO_END,
            unit="s",
            description="From the first send to the final outcome (success or dead letter), retries and delays in.",
            explicit_bucket_boundaries_advisory=QUEUE_WAIT_BUCKETS,
        )
