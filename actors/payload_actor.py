"""Actors whose payload is validated when it is sent, not only when it is processed.

A producer that builds a bad payload gets ``InvalidPayload`` from ``.send()`` naming the field, before
anything is published; the worker validates again (a producer in another language, or an older one,
may still publish anything).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import dramatiq
from dramatiq.message import Message

from actors.payloads import Payload
from services.errors import InvalidPayload, PermanentError

__all__ = ["STEP_OPTIONS", "payload_actor"]

#: Every step of a flow: an invalid payload or unknown entity is dead-lettered at once, anything else retried
#: with backoff from 1 s to 5 min for about half an hour.
STEP_OPTIONS: dict[str, Any] = {
    "throws": (PermanentError,),
    "max_retries": 10,
    "min_backoff": 1_000,
    "max_backoff": 300_000,
}

P = ParamSpec("P")
R = TypeVar("R")


class _PayloadActor(dramatiq.Actor[P, R]):
    """An actor taking one payload dict, checked against ``payload_model`` when a message is built."""

    payload_model: type[Payload]

    def message_with_options(
        self, *, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> Message[R]:
        if len(args) != 1 or kwargs:
            raise TypeError(f"{self.actor_name} takes exactly one payload argument")
        payload = args[0]
        if isinstance(payload, Payload):
            payload = payload.wire()
        self.payload_model.parse(payload)  # raises InvalidPayload naming the field
        return super().message_with_options(args=(payload,), kwargs=kwargs, **options)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        # A foreign producer may publish any args: the wrong number is as permanent as a bad payload, so
        # InvalidPayload (in every actor's throws) sends it to the XQ at once rather than a TypeError being
        # retried for a quarter of an hour (issue 7, fault 6).
        if len(args) != 1 or kwargs:
            raise InvalidPayload(
                f"{self.actor_name} takes exactly one payload argument, "
                f"got {len(args)} positional and {len(kwargs)} keyword"
            )
        return super().__call__(*args, **kwargs)


def payload_actor(model: type[Payload], **options: Any) -> Callable[[Callable[P, R]], dramatiq.Actor[P, R]]:
    """``@dramatiq.actor(**options)`` for a function taking one ``model`` payload, validated at send.

    Args:
        model: the payload model; ``.send()`` accepts an instance of it or its wire dict.
        options: passed to ``dramatiq.actor`` (``actor_name``, ``queue_name``, ``throws`` ...).
    """
    actor_class = type(f"{model.__name__}Actor", (_PayloadActor,), {"payload_model": model})
    return dramatiq.actor(actor_class=actor_class, **options)
