"""What docs/wire-format.md promises about the message, checked against the code that reads it.

- The JSON Schemas in ``docs/schemas/`` are what ``actors/payloads.py`` generates now (a drift fails here), and
  they accept and refuse what the payload models accept and refuse.
- The envelope keys: the five Dramatiq cannot do without, the two it invents when absent, no others.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # check-jsonschema's dependency; no stubs installed
import pytest
from dramatiq.errors import DecodeError
from dramatiq.message import Message

from actors.broker import broker
from actors.payload_schemas import PayloadActor, payload_actors, schema_files
from services.errors import InvalidPayload

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "docs" / "schemas"
SCRIPT = ROOT / "scripts" / "payload_schemas.py"

#: A valid payload for each payload model, by model name.
VALID: dict[str, dict[str, Any]] = {
    "PlaceOrder": {
        "schema_version": 1,
        "order_id": "o-1",
        "customer_email": "ada@example.com",
        "lines": [{"sku": "SKU-APPLE", "quantity": 2}],
    },
    "OrderRef": {"schema_version": 1, "order_id": "o-1"},
    "RegisterUser": {"schema_version": 1, "user_id": "u-1", "email": "ada@example.com", "name": "Ada"},
    "UserRef": {"schema_version": 1, "user_id": "u-1"},
}

ACTORS = payload_actors(broker)


def _message(actor: PayloadActor, payload: Any) -> dict[str, Any]:
    return {
        "queue_name": actor.queue_name,
        "actor_name": actor.actor_name,
        "args": [payload],
        "kwargs": {},
        "options": {"trace_context": {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}},
        "message_id": str(uuid.uuid4()),
        "message_timestamp": 1764172800000,
    }


def test_the_public_payload_actors_each_have_a_schema() -> None:
    assert [actor.actor_name for actor in ACTORS] == [
        "notify_customer",
        "place_order",
        "register_user",
        "reserve_inventory",
        "send_welcome_email",
    ]
    assert sorted(path.name for path in SCHEMAS.glob("*.json")) == [f"{a.actor_name}.json" for a in ACTORS]


def test_the_committed_schemas_are_what_the_models_generate() -> None:
    for name, text in schema_files(broker).items():
        assert (SCHEMAS / name).read_text(encoding="utf-8") == text, f"docs/schemas/{name} drifted: run make schemas"


def test_the_check_command_passes_on_the_repository_and_names_each_drifted_file(tmp_path: Path) -> None:
    assert subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True).returncode == 0

    out = tmp_path / "schemas"
    assert subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True).returncode == 0
    edited = json.loads((out / "place_order.json").read_text())
    edited["$defs"]["PlaceOrder"]["properties"].pop("customer_email")
    (out / "place_order.json").write_text(json.dumps(edited))
    (out / "register_user.json").unlink()
    (out / "cancel_order.json").write_text("{}")

    done = subprocess.run([sys.executable, str(SCRIPT), "--check", "--out", str(out)], capture_output=True, text=True)

    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"{out}/register_user.json: missing",
        f"{out}/place_order.json: differs from the model",
        f"{out}/cancel_order.json: no payload actor generates it",
        "the message schemas drifted from actors/payloads.py: run `make schemas`",
    ]


@pytest.mark.parametrize("actor", ACTORS, ids=lambda actor: actor.actor_name)
def test_each_schema_accepts_and_refuses_what_its_model_does(actor: PayloadActor) -> None:
    schema = json.loads((SCHEMAS / f"{actor.actor_name}.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    model = actor.model
    valid = VALID[model.__name__]

    assert model.parse(valid).wire() == valid
    validator.validate(_message(actor, valid))
    for payload in ({**valid, "coupon": "FREE"}, {**valid, "schema_version": 2}, {"schema_version": 1}):
        with pytest.raises(InvalidPayload):
            model.parse(payload)
        assert not validator.is_valid(_message(actor, payload)), payload

    # The envelope: one positional payload, no kwargs, every key, no other key, ids as UUIDs.
    message = _message(actor, valid)
    assert not validator.is_valid({**message, "args": [valid, valid]})
    assert not validator.is_valid({**message, "kwargs": {"payload": valid}})
    assert not validator.is_valid({**message, "eta": 0})
    assert not validator.is_valid({**message, "message_id": "not-a-uuid"})
    assert not validator.is_valid({**message, "options": {"trace_context": {"traceparent": 1}}})
    for key in message:
        assert not validator.is_valid({k: v for k, v in message.items() if k != key}), key


def _body(**fields: Any) -> bytes:
    message = {"queue_name": "users", "actor_name": "register_user", "args": [{}], "kwargs": {}, "options": {}}
    message.update(fields)
    return json.dumps({k: v for k, v in message.items() if v is not None}).encode()


@pytest.mark.parametrize("missing", ["queue_name", "actor_name", "args", "kwargs", "options"])
def test_a_message_without_a_required_key_cannot_be_decoded(missing: str) -> None:
    """The worker nacks an undecodable body straight to the dead-letter queue (tests/integration/test_bad_input)."""
    with pytest.raises(DecodeError):
        Message.decode(_body(**{missing: None}))


def test_an_unknown_top_level_key_makes_the_message_undecodable() -> None:
    with pytest.raises(DecodeError):
        Message.decode(_body(eta=0))


def test_without_message_id_and_timestamp_each_decode_invents_new_ones() -> None:
    """Why the document requires both: each delivery of the same body would get another id."""
    first, second = Message.decode(_body()), Message.decode(_body())
    assert first.message_id != second.message_id
    assert isinstance(first.message_timestamp, int)
    sent = Message.decode(_body(message_id="6f1c3b5e-2d0e-4a8e-9f51-0c8f2b7f6a11", message_timestamp=1764172800000))
    assert (sent.message_id, sent.message_timestamp) == ("6f1c3b5e-2d0e-4a8e-9f51-0c8f2b7f6a11", 1764172800000)
