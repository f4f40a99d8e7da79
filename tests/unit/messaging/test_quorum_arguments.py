"""The ``queue_declare`` calls :class:`messaging.broker.Broker` makes per queue type, without a server.

A recording channel stands in for pika's (set as the broker's per-thread channel, so no connection is
opened). tests/integration/test_quorum_queues.py checks the same declarations against a real RabbitMQ.
"""

from __future__ import annotations

from typing import Any

import pika.exceptions
import pytest
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL

from actors.broker import build_broker
from actors.settings import load_settings
from messaging.broadcast import broadcast_queue
from messaging.broker import TracedqBroker
from messaging.queue_declaration import QueueArgumentsMismatch, single_active_consumer

URL = "amqp://guest:guest@127.0.0.1:1/"  # never connected to


class RecordingChannel:
    """Records ``queue_declare`` as ``{queue: (durable, auto_delete, arguments)}``; refuses ``refuse``."""

    def __init__(self, refuse: str | None = None) -> None:
        self.declared: dict[str, tuple[bool, bool, dict[str, Any]]] = {}
        self.refuse = refuse
        self.is_open = False  # dramatiq's channel deleter closes only open channels

    def queue_declare(self, queue: str, durable: bool = False, auto_delete: bool = False, arguments: Any = None) -> Any:
        if queue == self.refuse:
            raise pika.exceptions.ChannelClosedByBroker(
                406, f"PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue '{queue}' in vhost '/'"
            )
        self.declared[queue] = (durable, auto_delete, dict(arguments or {}))

    def queue_bind(self, queue: str, exchange: str) -> None:
        pass

    def exchange_declare(self, exchange: str, exchange_type: str, durable: bool) -> None:
        pass


def _declare(broker: TracedqBroker, queue: str, channel: RecordingChannel | None = None) -> RecordingChannel:
    channel = channel or RecordingChannel()
    broker.state.channel = channel
    broker.channels.add(channel)
    broker.declare_queue(queue, ensure=True)
    return channel


def _dead_letter(queue: str) -> dict[str, Any]:
    return {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": f"{queue}.XQ"}


def test_classic_declares_exactly_what_dramatiq_declares() -> None:
    """The default adds no x-queue-type: queues declared by plain Dramatiq keep matching."""
    declared = _declare(TracedqBroker(url=URL), "work").declared
    assert declared == {
        "work": (True, False, _dead_letter("work")),
        "work.DQ": (True, False, _dead_letter("work")),
        "work.XQ": (True, False, {"x-message-ttl": DEAD_MESSAGE_TTL}),
    }


def test_quorum_applies_to_the_queue_its_delay_queue_and_its_dead_letter_queue() -> None:
    """Main, .DQ and .XQ all get x-queue-type quorum; the XQ keeps Dramatiq's x-message-ttl."""
    declared = _declare(TracedqBroker(url=URL, queue_type="quorum"), "work").declared
    quorum = {"x-queue-type": "quorum"}
    assert declared == {
        "work": (True, False, {**_dead_letter("work"), **quorum}),
        "work.DQ": (True, False, {**_dead_letter("work"), **quorum}),
        "work.XQ": (True, False, {"x-message-ttl": DEAD_MESSAGE_TTL, **quorum}),
    }


def test_quorum_keeps_per_queue_arguments() -> None:
    """Single active consumer works on quorum queues too, and still applies to the main queue only."""
    broker = TracedqBroker(url=URL, queue_type="quorum", queue_arguments=single_active_consumer("ledger"))
    declared = _declare(broker, "ledger").declared
    assert declared["ledger"][2] == {
        "x-single-active-consumer": True,
        **_dead_letter("ledger"),
        "x-queue-type": "quorum",
    }
    assert "x-single-active-consumer" not in declared["ledger.DQ"][2]


def test_broadcast_instance_queues_stay_classic_and_the_shared_xq_follows_the_type() -> None:
    """Instance queues are auto-delete and non-durable, which a quorum queue cannot be; the durable XQ can."""
    broker = TracedqBroker(url=URL, queue_type="quorum")
    queue = broadcast_queue("cache")
    declared = _declare(broker, queue).declared
    instance = broker.instance_queue_name(queue)
    expires = broker.broadcast_queue_expires_ms
    classic = {**_dead_letter(queue), "x-expires": expires, "x-queue-type": "classic"}
    assert declared == {
        instance: (False, True, classic),
        f"{instance}.DQ": (False, True, classic),
        f"{queue}.XQ": (True, False, {"x-message-ttl": DEAD_MESSAGE_TTL, "x-queue-type": "quorum"}),
    }


def test_quorum_with_max_priority_is_refused_at_construction() -> None:
    """Quorum queues refuse x-max-priority: say so before anything is declared."""
    with pytest.raises(ValueError, match="max_priority needs classic queues"):
        TracedqBroker(url=URL, queue_type="quorum", max_priority=5)
    assert TracedqBroker(url=URL, max_priority=5).max_priority == 5  # classic queues still take it


def test_unknown_queue_type_and_per_queue_type_are_refused() -> None:
    """The type is one choice for the whole broker, never a per-queue argument."""
    with pytest.raises(ValueError, match="queue_type must be classic or quorum"):
        TracedqBroker(url=URL, queue_type="stream")
    with pytest.raises(ValueError, match="x-queue-type"):
        TracedqBroker(url=URL, queue_arguments={"work": {"x-queue-type": "quorum"}})


def test_a_refused_dead_letter_queue_raises_queue_arguments_mismatch() -> None:
    """The XQ goes through the same declaration as the others: a type clash names the queue and the doc."""
    broker = TracedqBroker(url=URL, queue_type="quorum")
    with pytest.raises(QueueArgumentsMismatch, match=r"'work\.XQ'.*docs/deploy\.md"):
        _declare(broker, "work", RecordingChannel(refuse="work.XQ"))


def test_settings_choose_the_queue_type_and_fail_loudly_on_others() -> None:
    """RABBITMQ_QUEUE_TYPE reaches the broker; anything but classic or quorum stops the process."""
    assert load_settings({}).rabbitmq_queue_type == "classic"
    settings = load_settings({"BROKER_URL": URL, "RABBITMQ_QUEUE_TYPE": "quorum", "HEALTH_PORT": "0"})
    broker = build_broker(settings)
    assert isinstance(broker, TracedqBroker) and broker.queue_type == "quorum"
    with pytest.raises(ValueError, match="RABBITMQ_QUEUE_TYPE must be classic or quorum, not 'Quorum'"):
        load_settings({"RABBITMQ_QUEUE_TYPE": "Quorum"})
