"""User flow actors: register_user -> send_welcome_email."""

from __future__ import annotations

from typing import Any

from actors import bootstrap
from actors.email import deliver_email
from actors.payload_actor import payload_actor
from actors.payloads import RegisterUser, UserRef
from actors.span_marks import mark_duplicate
from services import notifications, users
from services.errors import PermanentError

__all__ = ["register_user", "send_welcome_email"]

_STEP: dict[str, Any] = {"throws": (PermanentError,), "max_retries": 10, "min_backoff": 1_000, "max_backoff": 300_000}


@payload_actor(RegisterUser, actor_name="register_user", queue_name="users", time_limit=30_000, **_STEP)
def register_user(payload: dict[str, Any]) -> None:
    """Create the user, then send the welcome email."""
    user = RegisterUser.parse(payload)
    created = users.register_user(
        bootstrap.dependencies().uow(), user_id=user.user_id, email=user.email, name=user.name
    )
    mark_duplicate(not created)
    send_welcome_email.send(UserRef(user_id=user.user_id).wire())


@payload_actor(UserRef, actor_name="send_welcome_email", queue_name="email", time_limit=60_000, **_STEP)
def send_welcome_email(payload: dict[str, Any]) -> None:
    """Email the welcome (rate limited, behind the SMTP circuit breaker)."""
    ref = UserRef.parse(payload)
    deps = bootstrap.dependencies()
    deliver_email(
        send_welcome_email,
        payload,
        lambda: mark_duplicate(not notifications.send_welcome_email(deps.uow(), deps.mailer, user_id=ref.user_id)),
    )
