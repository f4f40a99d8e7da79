"""The headers a dead letter carries (messaging/dead_lettering.py), and when an exception's text may go with them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import dramatiq
import pytest
from dramatiq.broker import MessageProxy
from dramatiq.brokers.stub import StubBroker
from dramatiq.errors import ActorNotFound
from dramatiq.message import Message
from dramatiq.middleware import SkipMessage

from messaging.dead_lettering import envelope_headers, failure_headers, remember_raw_delivery
from observability.personal_data import shareable_text
from services.errors import InvalidPayload

NOW = datetime(2026, 12, 2, 3, 4, 5, 678000, tzinfo=UTC)


@pytest.fixture
def broker() -> StubBroker:
    broker = StubBroker()
    dramatiq.actor(actor_name="strict", broker=broker, throws=(InvalidPayload,))(lambda: None)
    return broker


def _proxy(options: dict[str, Any], exception: BaseException, *, delivered_retries: Any = None) -> MessageProxy:
    """A failed delivery; ``delivered_retries``: the count it arrived with, before Retries counted this failure."""
    message = Message(queue_name="orders", actor_name="strict", args=(), kwargs={}, options=dict(options))
    proxy = MessageProxy(message)
    if delivered_retries is not None:
        message.options["retries"] = delivered_retries
        remember_raw_delivery(proxy, None, message.encode())  # as the consumer does
        message.options.update(options)
    proxy.stuff_exception(exception)
    return proxy


def _headers(broker: StubBroker, proxy: MessageProxy, *, capture: bool = False) -> dict[str, Any]:
    headers = failure_headers(broker, proxy, proxy._exception, queue="orders", capture=capture)
    assert datetime.fromisoformat(headers.pop("tracedq-dead-lettered-at")) <= datetime.now(UTC)
    assert headers.pop("tracedq-queue") == "orders"
    return headers


def test_retries_exhausted_counts_every_attempt_and_keeps_the_text_only_when_captured(broker: StubBroker) -> None:
    proxy = _proxy({"retries": 3}, RuntimeError("cannot mail ada@example.com"), delivered_retries=2)
    assert _headers(broker, proxy) == {
        "tracedq-dead-letter-reason": "retries_exhausted",
        "tracedq-exception-type": "RuntimeError",
        "tracedq-attempts": 3,
    }
    assert _headers(broker, proxy, capture=True)["tracedq-exception-message"] == "cannot mail ada@example.com"


def test_a_thrown_exception_declared_safe_keeps_its_text(broker: StubBroker) -> None:
    proxy = _proxy({}, InvalidPayload("customer_email: value is not a valid email address"), delivered_retries=0)
    assert _headers(broker, proxy) == {
        "tracedq-dead-letter-reason": "throws",
        "tracedq-exception-type": "services.errors.InvalidPayload",
        "tracedq-exception-message": "customer_email: value is not a valid email address",
        "tracedq-attempts": 1,
    }


@pytest.mark.parametrize(
    ("exception", "reason", "exception_type"),
    [(ActorNotFound("nobody"), "actor_not_found", "dramatiq.errors.ActorNotFound"), (SkipMessage(), "skipped", None)],
)
def test_a_message_no_actor_ran_counts_no_attempt(
    broker: StubBroker, exception: BaseException, reason: str, exception_type: str | None
) -> None:
    headers = _headers(broker, _proxy({"retries": 2}, exception, delivered_retries=2))
    assert headers == {
        "tracedq-dead-letter-reason": reason,
        "tracedq-attempts": 2,
        **({"tracedq-exception-type": exception_type} if exception_type else {}),
    }


@pytest.mark.parametrize("retries", [-5, "three", True, None])
def test_a_hostile_retry_count_counts_as_none(broker: StubBroker, retries: Any) -> None:
    proxy = _proxy({"retries": retries}, RuntimeError("x"))
    assert _headers(broker, proxy)["tracedq-attempts"] == 1


def test_envelope_headers_say_what_is_wrong() -> None:
    headers = envelope_headers("options is list, not an object", queue="orders", undecodable=False)
    assert headers["tracedq-dead-letter-reason"] == "invalid_envelope"
    assert headers["tracedq-exception-message"] == "options is list, not an object"
    assert headers["tracedq-attempts"] == 0 and "tracedq-exception-type" not in headers
    assert envelope_headers("not JSON", queue="orders", undecodable=True)["tracedq-dead-letter-reason"] == "undecodable"


def test_shareable_text() -> None:
    assert shareable_text(RuntimeError("ada@example.com"), capture=False) is None
    assert shareable_text(RuntimeError("ada@example.com"), capture=True) == "ada@example.com"
    assert shareable_text(InvalidPayload("email: not valid"), capture=False) == "email: not valid"

    class Sneaky(Exception):
        safe_to_log = "yes"  # only True counts

    assert shareable_text(Sneaky("ada@example.com"), capture=False) is None
