"""The fixtures every suite shares: the OTLP receiver, an SMTP server, a throwaway RabbitMQ node.

Loaded for every test by ``pytest_plugins`` in tests/conftest.py; a fixture only runs when a test asks for it.

- ``otlp_receiver``: the OTLP/HTTP receiver the real processes of a test export their spans to.
- ``smtp_server``: aiosmtpd on loopback keeping each email (tests/environment/smtp.py).
- ``queue_name``: a queue name of the test's own on the default vhost, deleted afterwards with its ``.DQ``/``.XQ``.
- ``rabbitmq_prometheus_node``: a throwaway RabbitMQ node with ``rabbitmq_prometheus``
  (tests/environment/rabbitmq_node.py).

The suites build their environments (a ``Stack``: vhost and database, and its ``Workers``) from the same pieces,
in tests/integration/conftest.py (one stack for the session) and tests/faults/conftest.py (one per test).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from otlp_receiver import OtlpReceiver
from tests.environment.rabbitmq_node import RabbitmqNode, throwaway_rabbitmq_node
from tests.environment.servers import require_rabbitmq
from tests.environment.smtp import SmtpServer
from tests.environment.vhost import DEFAULT_VHOST, VhostProbe


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """An OTLP/HTTP trace receiver on an ephemeral 127.0.0.1 port, stopped after the test."""
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """aiosmtpd on 127.0.0.1 that keeps every message it accepts."""
    server = SmtpServer()
    server.controller.start()
    try:
        yield server
    finally:
        server.controller.stop()


@pytest.fixture(scope="session")
def rabbitmq_prometheus_node() -> Iterator[RabbitmqNode]:
    """A throwaway RabbitMQ node with ``rabbitmq_prometheus`` on loopback ports, stopped at the end of the session.

    Not the server at RABBITMQ_URL, whose plugins stay as they are.
    """
    with throwaway_rabbitmq_node(RabbitmqNode()) as node:
        yield node


@pytest.fixture
def queue_name() -> Iterator[str]:
    """A unique queue per test on the default vhost, deleted afterwards with its delay and dead-letter queues."""
    require_rabbitmq()
    name = f"it_{uuid.uuid4().hex[:12]}"
    yield name
    VhostProbe(DEFAULT_VHOST).delete(queues=(name, f"{name}.DQ", f"{name}.XQ"))
