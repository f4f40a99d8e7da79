"""Hostile AMQP messages for the ``orders`` queue, each with the fate the worker must give it (fault 6, issue 7).

What a producer in another language, a buggy one or an attacker can publish to the queue with raw AMQP:

- ``undecodable``: not UTF-8, not JSON, JSON that is not an object, missing or unknown envelope keys, ``args``
  that is not a list, nesting deeper than the JSON decoder's recursion limit, an integer of 5,000 digits.
  Dramatiq cannot build a message: it logs "Failed to decode message" and nacks it (no span: no hook ran).
- ``rejected``: an envelope Dramatiq decodes but whose types would break its worker loop (``options`` that is not
  an object, an unhashable ``actor_name``, a ``queue_name`` other than the queue, ``options.throws``...):
  ``messaging/envelope.py`` nacks it and logs ``message_rejected``; no span either. Their payloads are valid
  orders, so the database proves none was processed.
- ``dead``: a well-formed envelope the actor refuses (payload of the wrong types or shape, wrong number of
  arguments, NUL characters, an unknown actor, garbage options or trace context around a bad payload): a
  process span with ``dramatiq.message.dead_lettered``, its reason (``throws`` or ``actor_not_found``) and
  the error, then the XQ.
- ``processed``: a valid order whose *trace context* is hostile (wrong types, over the caps, megabytes long,
  malformed ``traceparent``, junk in AMQP headers): the project rule is that a hostile carrier starts a
  fresh trace, so these are processed as new roots, flagged ``dramatiq.trace_context.invalid`` when the
  carrier was refused outright; junk ``tracestate``/``baggage`` beside a valid ``traceparent`` keeps its parent.

Everything is generated from one seeded ``random.Random``, so a failure reproduces.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["HUGE", "Hostile", "build_messages", "order_payload", "traceparent"]

Fate = Literal["undecodable", "rejected", "dead", "processed"]
HUGE = 3 * 1024 * 1024
_QUEUE = "orders"


@dataclass(frozen=True)
class Hostile:
    """One message to publish and what must become of it."""

    kind: str
    body: bytes
    fate: Fate
    message_id: str | None = None  # the envelope's id, when it is a string the spans can be matched on
    reason: str | None = None  # ``dead``: the span's dead_letter_reason
    error: str | None = None  # ``dead``: a fragment of the span's dead_letter_error
    order_id: str | None = None  # an order the payload names: placed for ``processed``, never otherwise
    carrier_invalid: bool = False  # ``processed``: the carrier is refused outright (the span says so)
    parent: tuple[str, str] | None = None  # ``processed``: the (trace id, span id) the span must continue
    headers: dict[str, Any] = field(default_factory=dict)


def order_payload(order_id: str) -> dict[str, Any]:
    return {"order_id": order_id, "customer_email": "hostile@example.com", "lines": [{"sku": "SKU-A", "quantity": 1}]}


def traceparent(rng: random.Random) -> tuple[str, str, str]:
    """A valid W3C traceparent and its (trace id, span id)."""
    # A letter first, so that upper-casing the id always breaks it.
    trace_id = rng.choice("abcdef") + f"{rng.getrandbits(124) | 1:031x}"
    span_id = f"{rng.getrandbits(64) | 1:016x}"
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def _envelope(**fields: Any) -> tuple[str, bytes]:
    message_id = str(uuid.uuid4())
    body: dict[str, Any] = {
        "queue_name": _QUEUE,
        "actor_name": "place_order",
        "args": [],
        "kwargs": {},
        "options": {},
        "message_id": message_id,
        "message_timestamp": int(time.time() * 1000),
    }
    body.update(fields)
    return message_id, json.dumps(body).encode()


def _junk(rng: random.Random, size: int) -> str:
    return "".join(rng.choice("abcdefXYZ0123456789-=;,:/ _\t\"'{}%") for _ in range(size))


# -- undecodable ---------------------------------------------------------------------------------------------


def _undecodable(rng: random.Random, index: int) -> Hostile:
    variant = index % 8
    if variant == 0:
        body = b"\xff" + rng.randbytes(rng.randint(0, 300))  # never UTF-8
    elif variant == 1:
        body = rng.choice([b"", b" ", b"{", b"}{", b"<order/>", b"order_id=1", b"{'a': 1}", b'{"a":1,}']) + _junk(
            rng, rng.randint(0, 40)
        ).encode().replace(b"{", b"(")
    elif variant == 2:
        body = json.dumps(rng.choice([[], [1, "x"], 42, -1.5, None, True, "place_order", [[{"args": []}]]])).encode()
    elif variant == 3:
        _, full = _envelope(args=[order_payload("x")])
        decoded = json.loads(full)
        if rng.random() < 0.5:
            # A required field: Dramatiq makes up a missing message_id or message_timestamp itself.
            del decoded[rng.choice(["queue_name", "actor_name", "args", "kwargs", "options"])]
        else:
            decoded[rng.choice(["priority", "headers", "redelivered"])] = 1
        body = json.dumps(decoded).encode()
    elif variant == 4:
        _, body = _envelope(args=rng.choice([5, None, True, 1.5]))
    elif variant == 5:
        depth = rng.randint(2_000, 5_000)  # beyond the decoder's recursion limit (1,000)
        body = b'{"queue_name": "orders", "args": ' + b"[" * depth + b"]" * depth + b"}"
    elif variant == 6:
        body = b'{"queue_name": "orders", "actor_name": "place_order", "args": [' + b"9" * 5000 + b"]}"
    else:
        body = _junk(rng, rng.randint(1, 200)).encode() + b"\x00\x01"
    return Hostile(f"undecodable/{variant}", body, "undecodable")


# -- rejected by messaging/envelope.py ----------------------------------------------------------------------------

_BAD_ENVELOPES: list[tuple[str, str, list[Any]]] = [
    ("options_not_object", "options", ["eta", 5, [1, 2], None, 1.5, True]),
    ("actor_name_not_string", "actor_name", [["place_order"], {"a": 1}, 5, None]),
    ("queue_name_elsewhere", "queue_name", ["inventory", "email", "nope", "orders.XQ", "orders.DQ", ""]),
    ("queue_name_not_string", "queue_name", [["orders"], None, 5]),
    ("message_id_not_string", "message_id", [5, [1], None, {"id": 1}]),
    ("kwargs_not_object", "kwargs", [[1], "x", 5, None]),
    ("options_code", "options", [{"throws": "builtins.Exception"}, {"retry_when": "lambda: True"}]),
    ("timestamp_not_number", "message_timestamp", ["yesterday", None, [1], True]),
]


def _rejected(rng: random.Random, index: int) -> Hostile:
    name, key, values = _BAD_ENVELOPES[index % len(_BAD_ENVELOPES)]
    order_id = f"rejected-{index}"
    value = rng.choice(values)
    message_id, body = _envelope(args=[order_payload(order_id)], **{key: value})
    if key == "message_id":
        message_id = value
    return Hostile(
        f"rejected/{name}",
        body,
        "rejected",
        message_id=message_id if isinstance(message_id, str) else None,
        order_id=order_id,
    )


# -- dead-lettered by the worker, with a span ------------------------------------------------------------------


def _bad_payload(rng: random.Random, order_id: str) -> tuple[str, Any, str]:
    """(name, payload, a fragment of the InvalidPayload text) for a payload ``place_order`` must refuse."""
    good = order_payload(order_id)
    line = good["lines"][0]
    nested: Any = "SKU-A"
    for _ in range(500):
        nested = [nested]
    cases: list[tuple[str, Any, str]] = [
        ("quantity_not_int", {**good, "lines": [{**line, "quantity": "lots"}]}, "lines.0.quantity"),
        ("quantity_negative", {**good, "lines": [{**line, "quantity": -1}]}, "lines.0.quantity"),
        ("lines_not_list", {**good, "lines": "many"}, "lines"),
        ("lines_empty", {**good, "lines": []}, "lines"),
        ("too_many_lines", {**good, "lines": [line] * 101}, "lines"),
        ("sku_nested_deep", {**good, "lines": [{**line, "sku": nested}]}, "lines.0.sku"),
        ("order_id_not_string", {**good, "order_id": rng.choice([5, None, ["x"], {"id": 1}])}, "order_id"),
        ("order_id_too_long", {**good, "order_id": "x" * 65}, "order_id"),
        ("nul_in_text", {**good, "order_id": f"{order_id}\x00"}, "order_id"),
        ("email_invalid", {**good, "customer_email": rng.choice(["not-an-email", "a@b", "", 5])}, "customer_email"),
        ("missing_field", {k: v for k, v in good.items() if k != "customer_email"}, "customer_email"),
        ("extra_field", {**good, "discount": 99}, "discount"),
        ("future_schema", {**good, "schema_version": 99}, "schema_version"),
        ("payload_not_object", rng.choice([None, [], "order", 5, 1.5]), "PlaceOrder"),
    ]
    return rng.choice(cases)


_ODD_OPTIONS: list[dict[str, Any]] = [
    {"retries": "many"},
    {"retries": -5},
    {"max_retries": "x"},
    {"time_limit": "x"},
    {"max_age": "x"},
    {"pipe_target": "x"},
    {"pipe_ignore": "yes"},
    {"on_success": "no_such_actor"},
    {"on_failure": 5},
    {"broker_priority": "high"},
    {"min_backoff": "x"},
    {"x" * 200: {"deep": [1, 2, {"y": None}]}},
]


def _dead(rng: random.Random, index: int) -> Hostile:
    variant = index % 5
    order_id = f"dead-{index}"
    if variant == 0:
        name, payload, fragment = _bad_payload(rng, order_id)
        message_id, body = _envelope(args=[payload])
        return Hostile(f"dead/{name}", body, "dead", message_id, "throws", fragment, order_id)
    if variant == 1:
        name, shape = rng.choice(
            [
                ("no_args", {"args": []}),
                ("two_args", {"args": [order_payload(order_id), order_payload(order_id)]}),
                ("kwargs", {"args": [order_payload(order_id)], "kwargs": {"extra": 1}}),
                ("args_string", {"args": "ab"}),
            ]
        )
        message_id, body = _envelope(**shape)
        fragment = "takes exactly one payload argument"
        return Hostile(f"dead/arity_{name}", body, "dead", message_id, "throws", fragment, order_id)
    if variant == 2:
        actor = rng.choice(["no_such_actor", "place_order ", "PLACE_ORDER", "__import__", "a" * 1000, "ß∂ƒ", ""])
        message_id, body = _envelope(actor_name=actor, args=[order_payload(order_id)])
        return Hostile("dead/unknown_actor", body, "dead", message_id, "actor_not_found", "ActorNotFound", order_id)
    name, payload, fragment = _bad_payload(rng, order_id)
    if variant == 3:
        options = dict(rng.choice(_ODD_OPTIONS))
        timestamp = rng.choice([int(time.time() * 1000), time.time() * 1000, -1, 10**20])
        message_id, body = _envelope(args=[payload], options=options, message_timestamp=timestamp)
        return Hostile("dead/odd_options", body, "dead", message_id, "throws", fragment, order_id)
    carrier_name, carrier, _, _ = _hostile_carrier(rng, index)
    message_id, body = _envelope(args=[payload], options={"trace_context": carrier})
    return Hostile(f"dead/carrier_{carrier_name}", body, "dead", message_id, "throws", fragment, order_id)


# -- valid orders under a hostile trace context ------------------------------------------------------------------


def _malformed_traceparent(rng: random.Random) -> str:
    valid, trace_id, span_id = traceparent(rng)
    return rng.choice(
        [
            f"00-{'0' * 32}-{span_id}-01",  # all-zero trace id
            f"00-{trace_id}-{'0' * 16}-01",  # all-zero span id
            f"ff-{trace_id}-{span_id}-01",  # forbidden version
            valid.upper(),
            valid[:-3],
            valid.replace("-", "_"),
            f"00-{trace_id[:-1]}g-{span_id}-01",
            f"{valid}-extra",  # version 00 takes no extra fields
            "",
            "00-",
            _junk(rng, rng.randint(1, 128)).replace("-", ""),
        ]
    )


def _hostile_carrier(rng: random.Random, index: int) -> tuple[str, Any, bool, tuple[str, str] | None]:
    """(name, the ``trace_context`` value, whether the carrier is refused outright, the parent it keeps, if any)."""
    valid, trace_id, span_id = traceparent(rng)
    variant = index % 12
    if variant == 0:
        return "not_object", rng.choice([valid, [valid], 5, True, 1.5]), True, None
    if variant == 1:
        return "value_not_string", {"traceparent": rng.choice([5, None, [valid], {"a": 1}, True])}, True, None
    if variant == 2:
        return "too_many_keys", {f"k{i}": "v" for i in range(rng.randint(17, 40))} | {"traceparent": valid}, True, None
    if variant == 3:
        return "traceparent_over_cap", {"traceparent": valid + "-" + "a" * rng.randint(73, 20_000)}, True, None
    if variant == 4:
        return (
            "tracestate_over_cap",
            {"traceparent": valid, "tracestate": "k=" + "v" * rng.randint(1023, 50_000)},
            True,
            None,
        )
    if variant == 5:
        return (
            "baggage_over_cap",
            {"traceparent": valid, "baggage": "k=" + "v" * rng.randint(8191, 100_000)},
            True,
            None,
        )
    if variant == 6:
        return "other_over_cap", {"traceparent": valid, "x-vendor": "v" * rng.randint(1025, 10_000)}, True, None
    if variant == 7:
        carrier = {"traceparent": valid, "tracestate": "k=" + "v" * 1000, "baggage": "b=" + "v" * 8000}
        carrier["x-vendor"] = "v" * 500  # every field under its cap, 9,595 characters in all
        return "total_over_cap", carrier, True, None
    if variant == 8:
        return "traceparent_malformed", {"traceparent": _malformed_traceparent(rng)}, False, None
    if variant == 9:
        junk = {
            "tracestate": rng.choice(["=", ",,,", "a=b=c", "K=v", ",".join(f"k{i}=v" for i in range(40))]),
            "baggage": rng.choice(["===;;;", "%zz=1", "a", ";", ",".join("k=v" for _ in range(100))]),
        }
        return "state_junk", {"traceparent": valid} | junk, False, (trace_id, span_id)
    if variant == 10:
        return "empty", {}, False, None
    return "null", None, False, None


def _processed(rng: random.Random, index: int) -> Hostile:
    order_id = f"carrier-{index}"
    if index % 13 == 12:  # junk W3C fields in the AMQP headers, which Dramatiq's consumer never reads
        message_id, body = _envelope(args=[order_payload(order_id)])
        headers = {"traceparent": _malformed_traceparent(rng), "tracestate": _junk(rng, 300), "baggage": "=;" * 50}
        return Hostile("processed/amqp_headers", body, "processed", message_id, order_id=order_id, headers=headers)
    name, carrier, invalid, parent = _hostile_carrier(rng, index)
    message_id, body = _envelope(args=[order_payload(order_id)], options={"trace_context": carrier})
    return Hostile(f"processed/{name}", body, "processed", message_id, None, None, order_id, invalid, parent)


def _huge(rng: random.Random) -> list[Hostile]:
    """A few messages of megabytes: bodies, payload fields, actor arguments and trace context fields."""
    valid, _, _ = traceparent(rng)
    big = "x" * HUGE
    messages = [
        Hostile("undecodable/huge_bytes", b"\xff" + rng.randbytes(HUGE), "undecodable"),
        Hostile("undecodable/huge_array", json.dumps([big[: 2 * 1024 * 1024]]).encode(), "undecodable"),
    ]
    fragment = "customer_email"
    message_id, body = _envelope(args=[{**order_payload("huge-1"), "customer_email": big}])
    messages.append(Hostile("dead/huge_field", body, "dead", message_id, "throws", fragment, "huge-1"))
    message_id, body = _envelope(actor_name="no_such_actor", args=[big])
    messages.append(Hostile("dead/huge_unknown_actor", body, "dead", message_id, "actor_not_found", "ActorNotFound"))
    bad = {**order_payload("huge-3"), "lines": []}
    message_id, body = _envelope(args=[bad], options={"junk": big[: 2 * 1024 * 1024]})
    messages.append(Hostile("dead/huge_option", body, "dead", message_id, "throws", "lines", "huge-3"))
    message_id, body = _envelope(args=[bad | {"order_id": "huge-4"}], options={"trace_context": {"traceparent": big}})
    messages.append(Hostile("dead/huge_traceparent", body, "dead", message_id, "throws", "lines", "huge-4"))
    for index, carrier in enumerate(
        [
            {"traceparent": valid + "-" + big},
            {"traceparent": valid, "baggage": "k=" + big[: 2 * 1024 * 1024]},
            {"traceparent": valid, "tracestate": "k=" + big[: 1024 * 1024]},
        ]
    ):
        order_id = f"huge-carrier-{index}"
        message_id, body = _envelope(args=[order_payload(order_id)], options={"trace_context": carrier})
        messages.append(Hostile("processed/huge_carrier", body, "processed", message_id, None, None, order_id, True))
    return messages


def build_messages(
    seed: int, *, hostile: int, processed: int, undecodable: int, rejected: int, valid: int
) -> list[Hostile]:
    """``hostile`` hostile messages (of which ``processed`` valid orders with a hostile carrier, ``undecodable``,
    ``rejected``, and the rest ``dead``, huge ones included) plus ``valid`` plain orders, shuffled.

    The plain orders carry a valid ``traceparent`` (kind ``valid``) and must continue it.
    """
    rng = random.Random(seed)
    messages = _huge(rng)
    quota = {fate: sum(1 for m in messages if m.fate == fate) for fate in ("processed", "undecodable")}
    messages += [_processed(rng, index) for index in range(processed - quota["processed"])]
    messages += [_undecodable(rng, index) for index in range(undecodable - quota["undecodable"])]
    messages += [_rejected(rng, index) for index in range(rejected)]
    messages += [_dead(rng, index) for index in range(hostile - len(messages))]
    for index in range(valid):
        order_id = f"valid-{index}"
        tp, trace_id, span_id = traceparent(rng)
        message_id, body = _envelope(args=[order_payload(order_id)], options={"trace_context": {"traceparent": tp}})
        messages.append(Hostile("valid", body, "processed", message_id, order_id=order_id, parent=(trace_id, span_id)))
    rng.shuffle(messages)
    return messages
