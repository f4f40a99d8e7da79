"""The attribute sets of the ``Metrics`` middleware's measurements, each built once and kept, within a bound.

Labels stay low-cardinality: queue names are canonical (``.DQ``/``.XQ`` stripped), an actor's name only when
the actor is declared (an unknown actor's name comes from the wire), ``error.type`` is an exception class. A
message's measurements look their attribute set up by a cheap tuple key instead of building a dict each time;
at most ``_MAX_LABEL_SETS`` are kept, because queue names can come from the wire too.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Final

from dramatiq.broker import Broker
from dramatiq.common import q_name
from opentelemetry.util.types import AttributeValue

from observability import semconv
from observability.broker_facts import messaging_system

__all__ = ["LabelSets"]

_MAX_LABEL_SETS: Final = 4096


class LabelSets:
    """The attribute sets built so far, by key."""

    __slots__ = ("_sets",)

    def __init__(self) -> None:
        self._sets: dict[Hashable, Mapping[str, AttributeValue]] = {}

    def labels(
        self,
        broker: Broker,
        queue_name: str,
        actor_name: str,
        operation: str | None,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> tuple[Hashable, Mapping[str, AttributeValue]]:
        """The attribute set of a measurement and a cheap key for it, built once per combination."""
        known = actor_name in broker.actors  # an unknown actor's name comes from the wire: unbounded
        key = (messaging_system(broker), queue_name, actor_name if known else None, operation, extra)
        attributes = self._sets.get(key)
        if attributes is None:
            built: dict[str, AttributeValue] = {
                semconv.MESSAGING_SYSTEM: key[0],
                semconv.MESSAGING_DESTINATION_NAME: q_name(queue_name),
            }
            if operation is not None:
                built[semconv.MESSAGING_OPERATION_NAME] = operation
            if known:
                built[semconv.ACTOR_NAME] = actor_name
            built.update(extra)
            attributes = built
            if len(self._sets) < _MAX_LABEL_SETS:  # queue names can come from the wire too
                self._sets[key] = attributes
        return key, attributes
