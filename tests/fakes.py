"""Hand-written fakes for the service layer's ports (cosmicpython style)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from services.errors import EmailUnavailable


@dataclass
class SentEmail:
    to: str
    subject: str
    body: str


@dataclass
class FakeMailer:
    """Records what it sends; ``fail_with`` makes the next sends raise instead."""

    sent: list[SentEmail] = field(default_factory=list)
    fail_with: Exception | None = None
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, *, to: str, subject: str, body: str) -> None:
        with self.lock:
            self.attempts += 1
            if self.fail_with is not None:
                # A fresh instance each time: re-raising one object grows its traceback without end.
                raise type(self.fail_with)(*self.fail_with.args)
            self.sent.append(SentEmail(to, subject, body))


def unavailable() -> EmailUnavailable:
    return EmailUnavailable("SMTP 421: try later")
