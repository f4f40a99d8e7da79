"""The span queue of ``observability/sdk/span_pipe.py``: bounded, never blocking, every span it drops counted.

It holds ended spans and ``Flush`` markers in order. Beyond its limit a span is dropped and counted
(``queue_full``); after a failed export the limit is one batch (``export_failing``) until an export succeeds, so a
dead collector costs one batch of memory, not the whole queue.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from opentelemetry.sdk.trace import ReadableSpan

from observability.sdk.export_health import EXPORT_FAILING, QUEUE_FULL, ExportHealth
from observability.sdk.export_link import Flush

__all__ = ["PendingSpans"]


class PendingSpans:
    """Spans waiting to be sent. Appends and takes are safe from any thread (``deque`` operations are atomic).

    Args:
        max_size: spans held before new ones are dropped.
        batch_size: spans per batch; also the limit while exports fail.
        health: where drops are counted.
    """

    def __init__(self, max_size: int, batch_size: int, health: ExportHealth) -> None:
        self.max_size, self.batch_size = max_size, batch_size
        self._health = health
        self._queue: deque[ReadableSpan | Flush] = deque()
        self._limit = max_size

    def __len__(self) -> int:
        return len(self._queue)

    def offer(self, span: ReadableSpan) -> bool:
        """Queue ``span``, or drop and count it when the queue is at its limit.

        Returns:
            Whether a full batch is waiting now.
        """
        queue, limit = self._queue, self._limit
        if len(queue) >= limit:
            self._health.drop(1, QUEUE_FULL if limit == self.max_size else EXPORT_FAILING)
            return False
        queue.append(span)
        return len(queue) >= self.batch_size

    def mark(self, flush: Flush) -> None:
        """Queue a flush marker (not counted against the limit: it holds no span)."""
        self._queue.append(flush)

    def take(self) -> tuple[list[ReadableSpan], Flush | None]:
        """Up to a batch of spans from the front, stopping at a flush marker (returned too)."""
        batch: list[ReadableSpan] = []
        popleft = self._queue.popleft
        try:
            while len(batch) < self.batch_size:
                item = popleft()
                if isinstance(item, Flush):
                    return batch, item
                batch.append(item)
        except IndexError:
            pass
        return batch, None

    def put_back(self, batch: list[ReadableSpan]) -> None:
        """Return a batch that could not be sent to the front, in order."""
        self._queue.extendleft(reversed(batch))

    def recovered(self) -> None:
        """An export succeeded: the whole queue may fill again."""
        self._limit = self.max_size

    def hold_one_batch(self) -> None:
        """An export failed: hold one batch at most, dropping (and counting) the newest spans beyond it."""
        self._limit = self.batch_size
        queue, extra, flushes = self._queue, 0, list[Flush]()
        try:
            while len(queue) > self.batch_size + len(flushes):
                item = queue.pop()
                if isinstance(item, Flush):
                    flushes.append(item)  # still waits for the held batch
                else:
                    extra += 1
        except IndexError:
            pass
        queue.extend(reversed(flushes))
        if extra:
            self._health.drop(extra, EXPORT_FAILING)

    def drain(self, span_to: Callable[[ReadableSpan], None]) -> int:
        """Empty the queue: each span to ``span_to``, each flush marker done. Returns the number of spans."""
        popleft, spans = self._queue.popleft, 0
        try:
            while True:
                item = popleft()
                if isinstance(item, Flush):
                    item.done.set()
                else:
                    span_to(item)
                    spans += 1
        except IndexError:
            return spans
