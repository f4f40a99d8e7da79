"""The instruments of the ``Metrics`` middleware: names, units and buckets from the messaging conventions.

Counts are kept in plain dicts and read by observable instruments when a reader collects, so counting a
message is one locked dict update instead of an SDK measurement (which cleans and hashes the attributes
every time: about 15 µs each on our machine, six per message before this). Durations still go through
the SDK's histograms, the only histogram the API offers, three records per message.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable, Mapping
from typing import Final

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.util.types import AttributeValue

from observability import semconv

__all__ = ["DURATION_BUCKETS", "QUEUE_WAIT_BUCKETS", "Instruments", "LocalCounts"]

_MESSAGE: Final = "{message}"  # the conventions' unit for message counts
# The messaging conventions' advisory boundaries for both duration histograms, in seconds.
DURATION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
# Queue wait includes backlogs and scheduled etas: minutes to an hour matter too.
QUEUE_WAIT_BUCKETS: Final = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class LocalCounts:
    """Counts per attribute set, added to on the hot path and observed at collection time.

    A count that went back to zero is still reported: an up-down counter's gauge must fall to 0, not vanish.
    """

    __slots__ = ("_attributes", "_counts", "_lock")

    def __init__(self) -> None:
        self._counts: dict[Hashable, int] = {}
        self._attributes: dict[Hashable, Mapping[str, AttributeValue]] = {}
        self._lock = threading.Lock()

    def add(self, key: Hashable, attributes: Mapping[str, AttributeValue], amount: int = 1) -> None:
        """Add ``amount`` to the count of ``key``, whose attributes are ``attributes`` (read the first time)."""
        with self._lock:  # += on a dict item is not atomic across threads
            count = self._counts.get(key)
            if count is None:
                self._attributes[key] = dict(attributes)
                count = 0
            self._counts[key] = count + amount

    def observe(self, options: CallbackOptions | None = None) -> Iterable[Observation]:
        """Every attribute set's count, as the callback of an observable instrument."""
        with self._lock:
            return [Observation(count, self._attributes[key]) for key, count in self._counts.items()]

    def value(self, key: Hashable) -> int:
        """The count of ``key`` (0 when never added to)."""
        return self._counts.get(key, 0)


class Instruments:
    """Every instrument ``Metrics`` records to, created once from one meter, and the counts behind them."""

    def __init__(self, meter: Meter) -> None:
        self.sent, self.consumed, self.retried = LocalCounts(), LocalCounts(), LocalCounts()
        self.dead_lettered, self.skipped, self.redelivered = LocalCounts(), LocalCounts(), LocalCounts()
        self.in_flight = LocalCounts()
        counters = (
            (self.sent, semconv.METRIC_SENT, "Messages the producer attempted to send."),
            (self.consumed, semconv.METRIC_CONSUMED, "Messages delivered to the worker."),
            (self.retried, semconv.METRIC_RETRIED, "Failed attempts re-enqueued by Retries (once each)."),
            (self.dead_lettered, semconv.METRIC_DEAD_LETTERED, "Messages moved to the dead-letter queue."),
            (self.skipped, semconv.METRIC_SKIPPED, "Deliveries skipped by a middleware."),
            (self.redelivered, semconv.METRIC_REDELIVERED, "Deliveries RabbitMQ flagged as redelivered."),
        )
        for counts, name, description in counters:
            meter.create_observable_counter(name, [counts.observe], unit=_MESSAGE, description=description)
        meter.create_observable_up_down_counter(
            semconv.METRIC_IN_FLIGHT,
            [self.in_flight.observe],
            unit=_MESSAGE,
            description="Messages being processed right now.",
        )
        end_to_end = "From the first send to the final outcome (success or dead letter), retries and delays in."
        histograms = (
            (semconv.METRIC_OPERATION_DURATION, "Duration of publish operations.", DURATION_BUCKETS),
            (semconv.METRIC_PROCESS_DURATION, "Duration of processing one delivery, by outcome.", DURATION_BUCKETS),
            (semconv.METRIC_QUEUE_WAIT, "From enqueue (or eta) to processing start.", QUEUE_WAIT_BUCKETS),
            (semconv.METRIC_END_TO_END, end_to_end, QUEUE_WAIT_BUCKETS),
        )
        self.operation_duration, self.process_duration, self.queue_wait, self.end_to_end = (
            meter.create_histogram(name, unit="s", description=description, explicit_bucket_boundaries_advisory=buckets)
            for name, description, buckets in histograms
        )
