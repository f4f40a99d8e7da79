"""User flow actors: register_user -> send_welcome_email."""

from __future__ import annotations

from typing import Any

from actors import bootstrap
from actors.email import email_actor
from actors.payload_actor import STEP_OPTIONS, payload_actor
from actors.payloads import RegisterUser, UserRef
from actors.span_marks import mark_duplicate
from services import notifications, users

__all__ = ["register_user", "send_welcome_email"]


@payload_actor(RegisterUser, actor_name="register_user", queue_name="users", time_limit=30_000, **STEP_OPTIONS)
def register_user(payload: dict[str, Any]) -> None:
    """Create the user, then send the welcome email."""
    user = RegisterUser.parse(payload)
    created = users.register_user(
        bootstrap.dependencies().uow(), user_id=user.user_id, email=user.email, name=user.name
    )
    mark_duplicate(not created)
    send_welcome_email.send(UserRef(user_id=user.user_id).wire())


send_welcome_email = email_actor(
    UserRef,
    "send_welcome_email",
    lambda deps, ref: notifications.send_welcome_email(deps.uow(), deps.mailer, user_id=ref.user_id),
    doc="Email the welcome (rate limited, behind the SMTP circuit breaker).",
)
