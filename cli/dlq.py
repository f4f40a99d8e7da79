"""``tracedq dlq``: inspect and replay RabbitMQ dead-letter queues (``<queue>.XQ``)."""

from __future__ import annotations

import click

__all__ = ["dlq"]


@click.group()
def dlq() -> None:
    """Inspect, replay and purge dead letters (``<QUEUE>.XQ``) on RabbitMQ."""
