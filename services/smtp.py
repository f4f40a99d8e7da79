"""The SMTP mailer (stdlib ``smtplib``), each exchange a CLIENT span, behind a circuit breaker."""

from __future__ import annotations

import smtplib
from collections.abc import Iterable
from email.message import EmailMessage

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.breaker import CircuitBreaker
from services.errors import EmailRejected, EmailUnavailable

__all__ = ["BREAKER_STATE_METRIC", "SmtpMailer"]

BREAKER_STATE_METRIC = "smtp.circuit_breaker.state"
_STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}

_tracer = trace.get_tracer(__name__)


class SmtpMailer:
    """Send mail through ``host:port``; 4xx, timeouts and refused connections are transient, 5xx permanent.

    Args:
        host: the SMTP server.
        port: its port.
        sender: the From address.
        timeout: seconds for connect and each command.
        breaker: opened by repeated transient failures; shared by every thread of the process.
        meter: where the breaker-state gauge is registered; the global meter (OTel API) by default.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str,
        timeout: float = 10.0,
        breaker: CircuitBreaker | None = None,
        meter: Meter | None = None,
    ) -> None:
        self.host, self.port, self.sender, self.timeout = host, port, sender, timeout
        self.breaker = breaker or CircuitBreaker(f"smtp://{host}:{port}")
        (meter or metrics.get_meter(__name__)).create_observable_gauge(
            BREAKER_STATE_METRIC,
            callbacks=[self._observe_breaker],
            description="SMTP circuit breaker: 0 closed, 1 half-open, 2 open",
        )

    def _observe_breaker(self, options: CallbackOptions) -> Iterable[Observation]:
        attributes: dict[str, str | int] = {"server.address": self.host, "server.port": self.port}
        yield Observation(_STATE_VALUES[self.breaker.state], attributes)

    def send(self, *, to: str, subject: str, body: str) -> None:
        """Send one message (see :class:`services.ports.Mailer`)."""
        with _tracer.start_as_current_span(
            "smtp send",
            kind=SpanKind.CLIENT,
            attributes={"server.address": self.host, "server.port": self.port, "smtp.breaker": self.breaker.state},
        ) as span:
            try:
                self.breaker.call(lambda: self._send(to, subject, body))
            except (EmailUnavailable, EmailRejected) as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                span.set_attribute("error.type", type(exc).__name__)
                raise

    def _send(self, to: str, subject: str, body: str) -> None:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self.sender, to, subject
        message.set_content(body)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as client:
                client.send_message(message)
        except smtplib.SMTPResponseException as exc:
            if 400 <= exc.smtp_code < 500:
                raise EmailUnavailable(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from exc
            raise EmailRejected(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            raise EmailRejected(f"recipients refused: {exc.recipients!r}") from exc
        except (TimeoutError, OSError, smtplib.SMTPException) as exc:
            raise EmailUnavailable(f"SMTP {self.host}:{self.port} unreachable: {exc}") from exc
