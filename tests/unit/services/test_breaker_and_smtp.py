"""The circuit breaker's states, and the SMTP mailer against a real SMTP server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from services.breaker import CircuitBreaker, CircuitOpen
from services.errors import EmailRejected, EmailUnavailable
from services.smtp import SmtpMailer
from tests.environment.ports import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def failing() -> None:
    raise EmailUnavailable("down")


def test_breaker_opens_after_threshold_then_half_opens_then_closes() -> None:
    """closed -> open after 3 failures -> half_open after the timeout -> closed after a success."""
    clock = Clock()
    breaker = CircuitBreaker("smtp", failure_threshold=3, reset_timeout=10, clock=clock)
    for _ in range(3):
        with pytest.raises(EmailUnavailable):
            breaker.call(failing)
    assert breaker.state == "open"
    with pytest.raises(CircuitOpen) as opened:
        breaker.call(lambda: None)
    assert opened.value.retry_after == 10
    clock.now = 10
    assert breaker.state == "half_open"
    assert breaker.call(lambda: "ok") == "ok"
    assert breaker.state == "closed"


def test_a_failed_trial_reopens_the_circuit() -> None:
    """In half-open, one failure is enough to open again."""
    clock = Clock()
    breaker = CircuitBreaker("smtp", failure_threshold=1, reset_timeout=5, clock=clock)
    with pytest.raises(EmailUnavailable):
        breaker.call(failing)
    clock.now = 5
    with pytest.raises(EmailUnavailable):
        breaker.call(failing)
    assert breaker.state == "open"


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.reply: str | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        if self.reply is not None:
            return self.reply
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server on loopback (aiosmtpd), on a free port."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def test_mailer_delivers_to_a_real_smtp_server(smtp_server: tuple[Inbox, int]) -> None:
    """The message arrives with its recipient and subject."""
    inbox, port = smtp_server
    SmtpMailer("127.0.0.1", port, sender="svc@example.com").send(to="ada@example.com", subject="Hi", body="Hello")
    [envelope] = inbox.messages
    assert envelope.rcpt_tos == ["ada@example.com"]
    assert b"Subject: Hi" in envelope.content


def test_smtp_4xx_is_transient_and_5xx_permanent(smtp_server: tuple[Inbox, int]) -> None:
    """421 means try later; 550 means never."""
    inbox, port = smtp_server
    mailer = SmtpMailer("127.0.0.1", port, sender="svc@example.com")
    inbox.reply = "451 try again later"
    with pytest.raises(EmailUnavailable):
        mailer.send(to="a@example.com", subject="s", body="b")
    inbox.reply = "550 no such user"
    with pytest.raises(EmailRejected):
        mailer.send(to="a@example.com", subject="s", body="b")


def test_unreachable_server_opens_the_circuit() -> None:
    """Connection refused is transient; repeated, it opens the breaker and later sends fail fast."""
    port = free_port()  # nothing listens here
    mailer = SmtpMailer("127.0.0.1", port, sender="s@example.com", timeout=2, breaker=None)
    mailer.breaker.failure_threshold = 2
    for _ in range(2):
        with pytest.raises(EmailUnavailable):
            mailer.send(to="a@example.com", subject="s", body="b")
    with pytest.raises(CircuitOpen):
        mailer.send(to="a@example.com", subject="s", body="b")
    assert mailer.breaker.state == "open"


def test_breaker_state_is_a_gauge() -> None:
    """The breaker's state is exported as a metric: 0 closed, 2 open."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    port = free_port()
    mailer = SmtpMailer("127.0.0.1", port, sender="s@example.com", timeout=2, meter=meter)
    mailer.breaker.failure_threshold = 1

    def state() -> list[tuple[int, dict]]:
        data = reader.get_metrics_data()
        points = [
            (point.value, dict(point.attributes))
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == "smtp.circuit_breaker.state"
            for point in metric.data.data_points
        ]
        return points

    assert state() == [(0, {"server.address": "127.0.0.1", "server.port": port})]
    with pytest.raises(EmailUnavailable):
        mailer.send(to="a@example.com", subject="s", body="b")
    assert state() == [(2, {"server.address": "127.0.0.1", "server.port": port})]
