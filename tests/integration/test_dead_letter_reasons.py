"""Dead letters that say why (messaging/dead_lettering.py), on a real RabbitMQ with our broker and a real worker.

Every way our code sends a message to ``<queue>.XQ`` leaves the reason, the exception, the attempt count and the
time in the copy's headers; the body is the delivered one; ``tracedq dlq`` shows it and replay leaves it behind.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import pika
import pytest
from click.testing import CliRunner
from dramatiq.message import Message
from dramatiq.middleware import default_middleware

from cli.main import tracedq
from messaging.broker import TracedqBroker
from services.errors import InvalidPayload
from tests.environment.polling import wait_until
from tests.environment.servers import RABBITMQ_URL

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(90)]

EMAIL = "ada.lovelace@example.com"  # personal data in a failure's text


def _broker(capture: bool) -> TracedqBroker:
    broker = TracedqBroker(
        url=RABBITMQ_URL,
        confirm_delivery=True,
        capture_personal_data=capture,
        middleware=[factory() for factory in default_middleware],
    )
    broker.emit_after("process_boot")
    return broker


def _actors(broker: TracedqBroker, queue: str) -> dict[str, dramatiq.Actor[..., Any]]:
    def fails(email: str) -> None:
        raise RuntimeError(f"cannot mail {email}")

    def refuses(email: str) -> None:
        raise InvalidPayload("customer_email: value is not a valid email address")

    options: dict[str, Any] = {"queue_name": queue, "broker": broker, "min_backoff": 10, "max_backoff": 20}
    return {
        "once": dramatiq.actor(actor_name=f"once_{queue}", max_retries=0, **options)(fails),
        "twice": dramatiq.actor(actor_name=f"twice_{queue}", max_retries=1, **options)(fails),
        "throws": dramatiq.actor(actor_name=f"throws_{queue}", throws=(InvalidPayload,), **options)(refuses),
    }


def _letters(queue: str) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """message id -> (AMQP headers, decoded body) of every message in the XQ, left there."""
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    channel = connection.channel()
    found = {}
    try:
        while True:
            method, properties, body = channel.basic_get(f"{queue}.XQ")
            if method is None:
                return found
            message = json.loads(body)
            found[message["message_id"]] = (dict(properties.headers or {}), message)
    finally:
        connection.close()  # unacked: every letter goes back to the XQ


def _kill(broker: TracedqBroker, queue: str, send: Any, count: int) -> None:
    ids = send()
    worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=2)
    worker.start()
    try:
        assert wait_until(lambda: len(_letters(queue)) == count, timeout=30), _letters(queue)
    finally:
        worker.stop()
        broker.close()
    assert len(ids) == count


@pytest.mark.parametrize("capture", [False, True])
def test_each_dead_letter_carries_its_reason_exception_attempts_and_time(queue_name: str, capture: bool) -> None:
    broker = _broker(capture)
    actors = _actors(broker, queue_name)
    unknown = Message(queue_name=queue_name, actor_name="nobody_declared_this", args=(EMAIL,), kwargs={}, options={})
    before = datetime.now(UTC)

    def send() -> list[str]:
        sent = [actors[name].send(EMAIL).message_id for name in ("once", "twice", "throws")]
        broker.channel.basic_publish("", queue_name, unknown.encode(), pika.BasicProperties(headers={"origin": "node"}))
        return [*sent, unknown.message_id]

    _kill(broker, queue_name, send, 4)
    letters = {
        headers["tracedq-dead-letter-reason"] + "/" + body["actor_name"]: (headers, body)
        for headers, body in (_letters(queue_name).values())
    }
    why = {key: {k: v for k, v in headers.items() if k.startswith("tracedq-")} for key, (headers, _) in letters.items()}
    for headers in why.values():
        at = datetime.fromisoformat(headers.pop("tracedq-dead-lettered-at"))
        assert before - timedelta(seconds=1) <= at <= datetime.now(UTC)
        assert headers.pop("tracedq-queue") == queue_name
    text = {"tracedq-exception-message": f"cannot mail {EMAIL}"} if capture else {}
    assert why == {
        f"retries_exhausted/once_{queue_name}": {
            "tracedq-dead-letter-reason": "retries_exhausted",
            "tracedq-exception-type": "RuntimeError",
            "tracedq-attempts": 1,
            **text,
        },
        f"retries_exhausted/twice_{queue_name}": {
            "tracedq-dead-letter-reason": "retries_exhausted",
            "tracedq-exception-type": "RuntimeError",
            "tracedq-attempts": 2,
            **text,
        },
        f"throws/throws_{queue_name}": {  # InvalidPayload declares its text free of personal data: always kept
            "tracedq-dead-letter-reason": "throws",
            "tracedq-exception-type": "services.errors.InvalidPayload",
            "tracedq-exception-message": "customer_email: value is not a valid email address",
            "tracedq-attempts": 1,
        },
        "actor_not_found/nobody_declared_this": {
            "tracedq-dead-letter-reason": "actor_not_found",
            "tracedq-exception-type": "dramatiq.errors.ActorNotFound",
            "tracedq-attempts": 0,
            **({"tracedq-exception-message": "nobody_declared_this"} if capture else {}),
        },
    }
    # The delivered body and headers, as RabbitMQ's own dead-lettering would keep them: the retried one as it was
    # published for its retry (retries=1), the foreign one with its producer's header.
    assert letters[f"retries_exhausted/twice_{queue_name}"][1]["options"]["retries"] == 1
    assert letters["actor_not_found/nobody_declared_this"][0]["origin"] == "node"
    assert Message(**letters["actor_not_found/nobody_declared_this"][1]).encode() == unknown.encode()


def test_dlq_shows_the_reason_and_replay_leaves_it_behind(queue_name: str) -> None:
    broker = _broker(False)
    actors = _actors(broker, queue_name)
    sent: list[str] = []

    def send() -> list[str]:
        sent.append(actors["once"].send(EMAIL).message_id)
        return sent

    _kill(broker, queue_name, send, 1)
    runner = CliRunner()
    env = {"COLUMNS": "300"}

    listed = runner.invoke(tracedq, ["dlq", "list", queue_name, "--broker", RABBITMQ_URL], env=env)
    assert listed.exit_code == 0, listed.output
    assert "retries_exhausted: RuntimeError" in listed.output
    assert EMAIL not in listed.output

    shown = runner.invoke(tracedq, ["dlq", "show", queue_name, sent[0], "--broker", RABBITMQ_URL], env=env)
    assert shown.exit_code == 0, shown.output
    assert '"tracedq-attempts": 1' in shown.output and "reason: retries_exhausted: RuntimeError" in shown.output

    replayed = runner.invoke(tracedq, ["dlq", "replay", queue_name, "--all", "--broker", RABBITMQ_URL], env=env)
    assert replayed.exit_code == 0, replayed.output
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        method, properties, body = connection.channel().basic_get(queue_name, auto_ack=True)
    finally:
        connection.close()
    assert method is not None and json.loads(body)["message_id"] == sent[0]
    assert not any(key.startswith("tracedq-") for key in (properties.headers or {}))
