"""The JSON Schema of the whole message each payload actor takes, generated from its pydantic payload model.

Producers in other languages validate against the files in ``docs/schemas/`` (one per actor, written by
``scripts/payload_schemas.py``); ``tests/unit/test_wire_format.py`` fails when a committed file drifts from
what the models generate. The envelope part states what ``docs/wire-format.md`` says: all seven keys,
no others, ``args`` holding exactly the payload object, no ``kwargs``, the carrier's limits.
"""

from __future__ import annotations

import json
from typing import Any, Final, NamedTuple

import dramatiq

from actors.payloads import Payload
from observability.propagation import (
    CARRIER_KEY,
    DEFAULT_FIELD_CAP,
    FIELD_CAPS,
    MAX_CARRIER_BYTES,
    MAX_CARRIER_FIELDS,
)

__all__ = ["JSON_SCHEMA_DIALECT", "PayloadActor", "message_schema", "payload_actors", "render", "schema_files"]

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"


class PayloadActor(NamedTuple):
    """An actor taking one validated payload: what its messages must name, and the payload's model."""

    actor_name: str
    queue_name: str
    model: type[Payload]


def payload_actors(broker: dramatiq.Broker) -> list[PayloadActor]:
    """The actors declared on ``broker`` that take one validated payload (``payload_actor``), sorted by name."""
    found = []
    for name in sorted(broker.get_declared_actors()):
        actor = broker.get_actor(name)
        model = getattr(actor, "payload_model", None)
        if isinstance(model, type) and issubclass(model, Payload):
            found.append(PayloadActor(actor.actor_name, actor.queue_name, model))
    return found


def _carrier_schema() -> dict[str, Any]:
    fields = {name: {"type": "string", "maxLength": cap} for name, cap in FIELD_CAPS.items()}
    return {
        "type": "object",
        "description": (
            "W3C trace context (traceparent, tracestate, baggage) as strings; {} or absent means no context. "
            f"At most {MAX_CARRIER_BYTES} characters in all."
        ),
        "properties": fields,
        "additionalProperties": {"type": "string", "maxLength": DEFAULT_FIELD_CAP},
        "maxProperties": MAX_CARRIER_FIELDS,
    }


def message_schema(actor_name: str, queue_name: str, model: type[Payload]) -> dict[str, Any]:
    """The schema of a message for ``actor_name`` on ``queue_name`` carrying one ``model`` payload."""
    payload = model.model_json_schema(ref_template="#/$defs/{model}")
    definitions = payload.pop("$defs", {})
    definitions[model.__name__] = payload
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": f"{actor_name} message",
        "description": (
            f"The Dramatiq message (AMQP body, JSON) that runs actor {actor_name!r}, published to the default "
            f"exchange with routing key {queue_name!r}. See docs/wire-format.md. Generated from "
            f"actors.payloads.{model.__name__} by scripts/payload_schemas.py: do not edit."
        ),
        "type": "object",
        "properties": {
            "queue_name": {"const": queue_name},
            "actor_name": {"const": actor_name},
            "args": {
                "type": "array",
                "description": "Exactly one positional argument: the payload object.",
                "prefixItems": [{"$ref": f"#/$defs/{model.__name__}"}],
                "items": False,
                "minItems": 1,
            },
            "kwargs": {"type": "object", "maxProperties": 0},
            "options": {
                "type": "object",
                "description": f"Producers write only {CARRIER_KEY!r}; the worker adds its own when it re-enqueues.",
                "properties": {CARRIER_KEY: _carrier_schema()},
            },
            "message_id": {
                "type": "string",
                "format": "uuid",
                "description": "A new UUID4 per message, lowercase with hyphens, as Dramatiq writes it.",
            },
            "message_timestamp": {
                "type": "integer",
                "minimum": 0,
                "description": "When the message was first sent, in milliseconds since the Unix epoch.",
            },
        },
        "required": ["queue_name", "actor_name", "args", "kwargs", "options", "message_id", "message_timestamp"],
        "additionalProperties": False,
        "$defs": definitions,
    }


def render(schema: dict[str, Any]) -> str:
    """The text of a schema file: stable key order, two-space indent, final newline."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def schema_files(broker: dramatiq.Broker) -> dict[str, str]:
    """File name (``<actor_name>.json``) -> file text, for every payload actor on ``broker``."""
    return {f"{actor.actor_name}.json": render(message_schema(*actor)) for actor in payload_actors(broker)}
