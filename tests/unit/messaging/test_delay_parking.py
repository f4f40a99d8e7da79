"""Which deliveries a worker parks instead of holding (messaging/delay_parking.py), and for how long."""

from __future__ import annotations

from typing import Any

import pytest
from dramatiq.message import Message

from actors.settings import load_settings
from messaging.broker import TracedqBroker
from messaging.delay_parking import may_park, park_queue_arguments, park_queue_name, parking_expiration

NOW = 1_000_000
HOLD = 900_000  # half of RabbitMQ's default consumer timeout


def _delayed(eta: Any, queue: str = "orders.DQ") -> Message[Any]:
    return Message(queue_name=queue, actor_name="a", args=(), kwargs={}, options={"eta": eta})


def _decision(eta: Any, queue: str, hold: int) -> int | None:
    """What a consumer of ``queue`` does with a delivery due at ``eta``: park it for so long, or hold it (None)."""
    return parking_expiration(_delayed(eta, queue), hold, NOW) if may_park(queue, hold) else None


@pytest.mark.parametrize(
    ("eta", "queue", "expected"),
    [
        (NOW + HOLD + 1, "orders.DQ", HOLD // 2),  # due after the hold limit: parked for half of it
        (NOW + 7 * 24 * 3600 * 1000, "orders.DQ", HOLD // 2),  # Retries' cap: still half the hold limit
        (NOW + HOLD, "orders.DQ", None),  # within the hold limit: held as Dramatiq does
        (NOW - 5, "orders.DQ", None),  # overdue
        (NOW + HOLD + 1, "orders", None),  # not a delay queue
        (NOW + HOLD + 1, "catalog.broadcast.DQ", None),  # a process's own delay queue: never parked
        ("tomorrow", "orders.DQ", None),  # Dramatiq replaces a bad eta with now
        (True, "orders.DQ", None),
    ],
)
def test_parking_expiration(eta: Any, queue: str, expected: int | None) -> None:
    assert _decision(eta, queue, HOLD) == expected


def test_no_hold_limit_parks_nothing() -> None:
    assert _decision(NOW + 10**9, "orders.DQ", 0) is None


def test_park_queue_dead_letters_back_to_the_delay_queue() -> None:
    assert park_queue_name("orders") == park_queue_name("orders.DQ") == "orders.DQ.park"
    assert park_queue_arguments("orders.DQ") == {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "orders.DQ"}


def test_hold_limit_is_half_the_consumer_timeout_and_needs_confirms() -> None:
    assert load_settings({}).rabbitmq_consumer_timeout_ms == 1_800_000
    assert load_settings({"RABBITMQ_CONSUMER_TIMEOUT_MS": "0"}).rabbitmq_consumer_timeout_ms == 0
    url = "amqp://guest:guest@127.0.0.1:1/"  # never connected: the broker connects lazily
    assert TracedqBroker(url=url, confirm_delivery=True, consumer_timeout_ms=60_000).delay_hold_limit_ms == 30_000
    # Unconfirmed, a parked copy could be lost after the original is acked: hold instead.
    assert TracedqBroker(url=url, consumer_timeout_ms=60_000).delay_hold_limit_ms == 0
