"""The worker app of the stuck-worker tests in tests/integration/test_worker_health.py.

``dramatiq --skip-logging tests.integration.worker_health_app`` runs our production broker (heartbeats and the
health endpoint configured from the environment, as deployed) with the real actors, plus actors and a middleware
that get a worker process stuck in each way its health checks must see:

* ``blocks_in_a_system_call``: ``os.read`` on a pipe nobody writes to. Dramatiq's TimeLimit raises its exception
  in the thread only when the thread runs Python code again, so a thread blocked in a system call outlives its
  time limit for good.
* ``kills_its_consumer`` / ``blocks_its_consumer``: sent with a delay, they reach the delay queue's consumer
  thread, where :class:`_ConsumerBreaker` ends that thread (``SystemExit`` is not an ``Exception``: Dramatiq's
  consumer loop does not catch it) or blocks it for good, as a publish on a connection that never answers would.
"""

from __future__ import annotations

import os
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from actors import broker  # the production broker, logging and tracing, configured from the environment

__all__ = ["QUEUE", "blocks_in_a_system_call", "blocks_its_consumer", "broker", "kills_its_consumer"]

QUEUE = "health_app"
TIME_LIMIT_MS = 500


def _block_forever() -> None:
    read_end, _write_end = os.pipe()  # the write end stays open: no end of file, ever
    os.read(read_end, 1)


@dramatiq.actor(queue_name=QUEUE, max_retries=0, time_limit=TIME_LIMIT_MS)
def blocks_in_a_system_call(customer_email: str) -> None:
    _block_forever()


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def kills_its_consumer() -> None:
    """Never runs: its delay queue's consumer thread dies as it takes the message."""


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def blocks_its_consumer() -> None:
    """Never runs: its delay queue's consumer thread blocks as it takes the message."""


class _ConsumerBreaker(Middleware):
    """Runs on the delay queue's consumer thread (``before_delay_message``) as it takes a delayed message."""

    def before_delay_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if message.actor_name == kills_its_consumer.actor_name:
            raise SystemExit
        if message.actor_name == blocks_its_consumer.actor_name:
            _block_forever()


broker.add_middleware(_ConsumerBreaker())
