"""Broadcast: every running worker process refreshes its in-process catalogue cache.

``refresh_catalog_cache.send()`` from any process publishes to the ``catalog.broadcast`` fanout exchange;
each worker process consumes its own instance queue (see :mod:`messaging.broker`), so each process runs the
actor once. On the StubBroker (``memory://``) it is an ordinary queue with one consumer.
"""

from __future__ import annotations

import dramatiq
import structlog
from opentelemetry import trace

from actors import bootstrap
from actors.broker import broker
from messaging.broadcast import broadcast_queue
from messaging.broker import TracedqBroker
from observability import semconv
from services.catalog import CatalogCache

__all__ = ["INSTANCE_QUEUE_ATTRIBUTE", "QUEUE", "cache", "refresh_catalog_cache"]

QUEUE = broadcast_queue("catalog")  # "catalog.broadcast"
#: On the process span: the instance queue this process consumed the broadcast from (RabbitMQ only).
INSTANCE_QUEUE_ATTRIBUTE = semconv.BROADCAST_INSTANCE_QUEUE

#: This process's catalogue cache.
cache = CatalogCache()

_log = structlog.get_logger(__name__)


@dramatiq.actor(actor_name="refresh_catalog_cache", queue_name=QUEUE, broker=broker, max_retries=3, time_limit=60_000)
def refresh_catalog_cache() -> None:
    """Reload this process's catalogue cache from the database."""
    instance_queue = broker.instance_queue_name(QUEUE) if isinstance(broker, TracedqBroker) else None
    if instance_queue is not None:
        trace.get_current_span().set_attribute(INSTANCE_QUEUE_ATTRIBUTE, instance_queue)
    products = cache.refresh(bootstrap.dependencies().uow())
    _log.info("catalog_cache_refreshed", products=products, instance_queue=instance_queue)
