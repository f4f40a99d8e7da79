"""Composition root: the service layer's collaborators, built once per process on first use.

Nothing connects at import time: a producer that only sends never opens the database. Tests replace the
dependencies with :func:`override`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from dramatiq.rate_limits import RateLimiter, WindowRateLimiter
from dramatiq.rate_limits.backend import RateLimiterBackend
from dramatiq.rate_limits.backends import StubBackend
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from sqlalchemy.orm import Session

from actors.settings import Settings
from services.ports import Mailer
from services.smtp import SmtpMailer
from services.unit_of_work import SqlUnitOfWork, make_engine, make_session_factory

__all__ = ["Dependencies", "build", "dependencies", "override"]


@dataclass
class Dependencies:
    """What the actors hand to the services."""

    session_factory: Callable[[], Session]
    mailer: Mailer
    email_limiter: RateLimiter

    def uow(self) -> SqlUnitOfWork:
        """A fresh unit of work."""
        return SqlUnitOfWork(self.session_factory)


_lock = threading.Lock()
_current: Dependencies | None = None


def build(settings: Settings) -> Dependencies:
    """Build real dependencies from settings: engine (with SQL spans), SMTP mailer, rate limiter."""
    engine = make_engine(settings.database_url)
    SQLAlchemyInstrumentor().instrument(engine=engine, enable_commenter=False)
    backend: RateLimiterBackend
    if settings.redis_url:
        from dramatiq.rate_limits.backends import RedisBackend

        backend = RedisBackend(url=settings.redis_url)
    else:
        backend = StubBackend()  # type: ignore[no-untyped-call]  # dramatiq.rate_limits is untyped
    return Dependencies(
        session_factory=make_session_factory(engine),
        mailer=SmtpMailer(settings.smtp_host, settings.smtp_port, sender=settings.smtp_sender),
        # A one-second window: at most email_rate_limit sends per second across the backend's workers.
        email_limiter=WindowRateLimiter(  # type: ignore[no-untyped-call]
            backend, "email-send", limit=settings.email_rate_limit, window=1
        ),
    )


def dependencies() -> Dependencies:
    """This process's dependencies, built from settings the first time they are needed."""
    global _current
    if _current is None:
        with _lock:
            if _current is None:
                from actors.broker import settings

                _current = build(settings)
    return _current


def override(replacement: Dependencies | None) -> None:
    """Use ``replacement`` from now on (tests); ``None`` goes back to building from settings."""
    global _current
    _current = replacement
