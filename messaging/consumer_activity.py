"""What this worker process's consumers are doing: recorded by the broker and its consumers, read by the heartbeat.

Dramatiq's consumer thread loops forever: a failed ``broker.consume`` (say RabbitMQ refusing a queue
declaration, :class:`messaging.queue_declaration.QueueArgumentsMismatch`) is logged and retried every few
seconds, so the process looks alive while it consumes nothing. :class:`ConsumerActivity` keeps, per consumer
(Dramatiq's consumer queue name: ``orders``, ``orders.DQ``), when it last showed signs of life, and per
canonical queue why its declaration fails. :class:`worker_health.heartbeat.Heartbeat` turns both into
problems in the heartbeat file (docs/health.md).

A tick is a plain dict store (no lock: one writer per key, the consumer thread; the GIL makes the store and the
heartbeat thread's ``copy()`` atomic), made on every ``consume`` attempt and every item the consumer yields:
a delivery, or the ``None`` Dramatiq's consumer yields when idle for ``worker_timeout`` (1 s). A consumer
thread that stops ticking is stuck (blocked in a call that never returns) even though its thread is alive.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["ConsumerActivity"]


@dataclass
class ConsumerActivity:
    """Last signs of life of each consumer, and the queues whose declaration RabbitMQ refuses."""

    #: consumer queue name -> ``time.monotonic()`` of its last consume attempt, delivery or idle tick
    ticks: dict[str, float] = field(default_factory=dict)
    #: canonical queue name -> why declaring it fails (the exception's text: names and arguments, no messages)
    declaration_failures: dict[str, str] = field(default_factory=dict)

    def tick(self, queue_name: str) -> None:
        self.ticks[queue_name] = time.monotonic()

    def declaration_failed(self, canonical_name: str, reason: str) -> None:
        self.declaration_failures[canonical_name] = reason

    def declaration_succeeded(self, canonical_name: str) -> None:
        self.declaration_failures.pop(canonical_name, None)
