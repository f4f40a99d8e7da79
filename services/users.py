"""Users: register a user once, whatever the number of deliveries."""

from __future__ import annotations

import structlog
from opentelemetry import trace

from services.model import User
from services.unit_of_work import Duplicate, SqlUnitOfWork

__all__ = ["register_user"]

_tracer = trace.get_tracer(__name__)
_log = structlog.get_logger(__name__)


def register_user(uow: SqlUnitOfWork, *, user_id: str, email: str, name: str) -> bool:
    """Create the user. Returns False (and changes nothing) when this user was already registered."""
    with _tracer.start_as_current_span("register user", attributes={"user.id": user_id}), uow:
        try:
            uow.claim(f"register_user:{user_id}")
            uow.session.add(User(id=user_id, email=email, name=name, created_at=uow.clock()))
            uow.commit()
        except Duplicate:
            _log.info("user_already_registered", user_id=user_id)
            return False
    _log.info("user_registered", user_id=user_id)
    return True
