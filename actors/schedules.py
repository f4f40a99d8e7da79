"""Periodic actors, run by ``periodiq actors``; workers consume them from the ``schedules`` queue.

Thin over :mod:`services.orders`. Each tick is its own trace, rooted at ``tick <actor>`` (see
:mod:`actors.ticks`). A tick older than ``PeriodiqMiddleware(skip_delay=30)`` when a worker takes it is
skipped, and retries are short for the same reason: Retries re-sends the tick with its ``scheduled_at``,
so a retry that lands more than 30 s after the scheduled time would be skipped as stale.

Importing this module in the periodiq scheduler makes its SIGTERM flush the spans it has queued.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import dramatiq
import structlog
from periodiq import cron

from actors import bootstrap
from actors.broker import broker
from actors.ticks import PeriodicActor, install_flush_on_sigterm
from services import orders

__all__ = ["DAILY_STOCK_REPORT", "EVERY_MINUTE", "release_expired_reservations", "stock_report"]

QUEUE = "schedules"
EVERY_MINUTE = "* * * * *"
DAILY_STOCK_REPORT = "0 6 * * *"  # 06:00 in the scheduler's local time zone (periodiq uses pendulum.now())

_log = structlog.get_logger(__name__)
P = ParamSpec("P")
R = TypeVar("R")


def _periodic(actor_name: str, schedule: str, **options: Any) -> Callable[[Callable[P, R]], PeriodicActor[P, R]]:
    """``@dramatiq.actor`` for a tick: our broker, the schedules queue, the tick span (:class:`PeriodicActor`)."""
    return dramatiq.actor(  # type: ignore[return-value]  # its ActorDecorator is that callable
        broker=broker,
        actor_class=PeriodicActor,
        actor_name=actor_name,
        queue_name=QUEUE,
        periodic=cron(schedule),
        **options,
    )


@_periodic(
    "release_expired_reservations",
    EVERY_MINUTE,
    max_retries=0,  # the next tick, a minute later, is the retry
    time_limit=50_000,  # done before the next tick arrives
)
def release_expired_reservations() -> int:
    """Give back the stock of expired reservations. The service logs ``reservations_released``."""
    return orders.release_expired_reservations(bootstrap.dependencies().uow())


@_periodic(
    "stock_report",
    DAILY_STOCK_REPORT,
    # Backoffs of about 1, 2 and 4 s keep every retry inside the 30 s skip_delay.
    max_retries=3,
    min_backoff=1_000,
    max_backoff=4_000,
    time_limit=120_000,
)
def stock_report() -> dict[str, int]:
    """Log the stock on hand per SKU."""
    stock = orders.stock_report(bootstrap.dependencies().uow())
    _log.info("stock_report", products=len(stock), units=sum(stock.values()), stock=stock)
    return stock


install_flush_on_sigterm()
