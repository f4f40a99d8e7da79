"""One place where a delivery ends for a middleware, however it ends: processed, failed, or skipped.

Dramatiq calls ``after_process_message`` when an actor returned or raised and ``after_skip_message`` when a
middleware skipped the message (a stale periodic tick, an expired age limit). ``Tracing`` ends its process span
and ``Metrics`` records its duration and outcome at either, so both route the two hooks to one method.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.broker import Broker, MessageProxy

__all__ = ["DeliveryEndMiddleware"]


class DeliveryEndMiddleware(dramatiq.Middleware):
    """A middleware whose :meth:`end_delivery` runs once per delivery, when it ends."""

    def after_process_message(
        self, broker: Broker, message: MessageProxy, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        self.end_delivery(broker, message, exception=exception, skipped=False)

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        """Also reached when a middleware before this one skipped: the attempt then ends unmeasured."""
        self.end_delivery(broker, message, exception=None, skipped=True)

    def end_delivery(
        self, broker: Broker, message: MessageProxy, *, exception: BaseException | None, skipped: bool
    ) -> None:
        """What this middleware does when a delivery ends; ``exception`` is what the actor raised, if anything."""
        raise NotImplementedError
