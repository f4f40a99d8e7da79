"""Users and notifications: once-only effects, transient failures leave the step retryable."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from services import notifications, orders, users
from services.errors import EmailUnavailable, UnknownUser
from services.unit_of_work import SqlUnitOfWork
from tests.fakes import FakeMailer, unavailable


def test_register_twice_creates_one_user(session_factory: sessionmaker[Session]) -> None:
    """The second registration of the same user id is a duplicate."""
    assert users.register_user(SqlUnitOfWork(session_factory), user_id="u1", email="a@b.io", name="Ada")
    assert not users.register_user(SqlUnitOfWork(session_factory), user_id="u1", email="a@b.io", name="Ada")


def test_welcome_email_is_sent_once(session_factory: sessionmaker[Session]) -> None:
    """Two deliveries of the welcome step send one email."""
    users.register_user(SqlUnitOfWork(session_factory), user_id="u2", email="grace@b.io", name="Grace")
    mailer = FakeMailer()
    assert notifications.send_welcome_email(SqlUnitOfWork(session_factory), mailer, user_id="u2")
    assert not notifications.send_welcome_email(SqlUnitOfWork(session_factory), mailer, user_id="u2")
    assert [(m.to, m.subject) for m in mailer.sent] == [("grace@b.io", "Welcome!")]


def test_a_transient_smtp_failure_leaves_the_step_to_retry(session_factory: sessionmaker[Session]) -> None:
    """When SMTP fails the key is not recorded, so the retry sends the email."""
    users.register_user(SqlUnitOfWork(session_factory), user_id="u3", email="x@b.io", name="X")
    mailer = FakeMailer(fail_with=unavailable())
    with pytest.raises(EmailUnavailable):
        notifications.send_welcome_email(SqlUnitOfWork(session_factory), mailer, user_id="u3")
    mailer.fail_with = None
    assert notifications.send_welcome_email(SqlUnitOfWork(session_factory), mailer, user_id="u3")
    assert len(mailer.sent) == 1


def test_welcome_for_unknown_user_is_permanent(session_factory: sessionmaker[Session]) -> None:
    """No such user: retrying cannot help."""
    with pytest.raises(UnknownUser):
        notifications.send_welcome_email(SqlUnitOfWork(session_factory), FakeMailer(), user_id="nobody")


def test_customer_notification_carries_the_rejection_reason(session_factory: sessionmaker[Session]) -> None:
    """A rejected order's email says why."""
    orders.place_order(
        SqlUnitOfWork(session_factory), order_id="o9", customer_email="c@b.io", lines=[orders.Line("PEAR", 9)]
    )
    orders.reserve_inventory(SqlUnitOfWork(session_factory), order_id="o9")
    mailer = FakeMailer()
    notifications.notify_customer(SqlUnitOfWork(session_factory), mailer, order_id="o9")
    assert mailer.sent[0].subject == "Order o9: rejected"
    assert "insufficient stock: PEAR (wanted 9, have 2)" in mailer.sent[0].body
