"""A real SMTP server for a test: aiosmtpd on a loopback port, keeping every message it accepts."""

from __future__ import annotations

import email
import email.policy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.environment.ports import free_port

__all__ = ["Delivered", "SmtpServer"]


@dataclass(frozen=True)
class Delivered:
    """One message the SMTP server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        return "" if part is None else str(part.get_content())


class SmtpServer:
    """aiosmtpd on 127.0.0.1 that keeps every message it accepts."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self._lock = threading.Condition()
        self._messages: list[Delivered] = []
        self.controller = Controller(self, hostname=self.host, port=self.port)

    async def handle_DATA(self, server: Any, smtp_session: Any, envelope: Any) -> str:  # noqa: N802  (aiosmtpd hook)
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode()
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self._lock:
            self._messages.append(Delivered(envelope.mail_from, list(envelope.rcpt_tos), parsed))
            self._lock.notify_all()
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list[Delivered]:
        with self._lock:
            return list(self._messages)

    def wait_for(self, predicate: Callable[[list[Delivered]], bool], timeout: float) -> bool:
        """Wait until ``predicate`` holds for the messages accepted so far; whether it did within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(list(self._messages)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(min(remaining, 0.1))
            return True
