"""Notifications: the welcome email and the order status email.

Email cannot join a database transaction, so delivery is at least once: the step claims its key after a
successful send. A crash between the two sends the email again on redelivery; never zero times.
"""

from __future__ import annotations

import structlog
from opentelemetry import trace

from services.errors import UnknownOrder, UnknownUser
from services.model import Order, User
from services.ports import Mailer
from services.unit_of_work import Duplicate, SqlUnitOfWork

__all__ = ["notify_customer", "send_welcome_email"]

_tracer = trace.get_tracer(__name__)
_log = structlog.get_logger(__name__)


def send_welcome_email(uow: SqlUnitOfWork, mailer: Mailer, *, user_id: str) -> bool:
    """Email a welcome to the user once. Returns False when it was already sent."""
    with _tracer.start_as_current_span("send welcome email", attributes={"user.id": user_id}), uow:
        key = f"welcome_email:{user_id}"
        try:
            uow.claim(key)
        except Duplicate:
            return False
        user = uow.session.get(User, user_id)
        if user is None:
            raise UnknownUser(user_id)
        mailer.send(to=user.email, subject="Welcome!", body=f"Hello {user.name}, welcome aboard.")
        try:
            uow.commit()
        except Duplicate:
            return False
    _log.info("welcome_email_sent", user_id=user_id)
    return True


def notify_customer(uow: SqlUnitOfWork, mailer: Mailer, *, order_id: str) -> bool:
    """Email the customer the order's status once. Returns False when it was already sent."""
    with _tracer.start_as_current_span("notify customer", attributes={"order.id": order_id}), uow:
        try:
            uow.claim(f"notify_customer:{order_id}")
        except Duplicate:
            return False
        order = uow.session.get(Order, order_id)
        if order is None:
            raise UnknownOrder(order_id)
        body = f"Your order {order.id} is {order.status}."
        if order.reason:
            body += f" Reason: {order.reason}."
        mailer.send(to=order.customer_email, subject=f"Order {order.id}: {order.status}", body=body)
        try:
            uow.commit()
        except Duplicate:
            return False
    _log.info("customer_notified", order_id=order_id, status=order.status)
    return True
