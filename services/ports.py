"""Protocols for the collaborators the services are given (fakes live in tests/)."""

from __future__ import annotations

from typing import Protocol

__all__ = ["Mailer"]


class Mailer(Protocol):
    """Sends one plain-text email.

    Raises ``services.errors.EmailUnavailable`` when trying later may work, ``EmailRejected`` when not.
    """

    def send(self, *, to: str, subject: str, body: str) -> None: ...
