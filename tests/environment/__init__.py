"""One way to build a test environment: servers, receivers and real processes, for the integration and fault suites.

- ``stack``: a RabbitMQ vhost (``vhost``) and a PostgreSQL database (``database``) of the test's own: ``own_stack``.
- ``worker`` / ``api`` / ``processes``: the real ``dramatiq`` worker tree and ``uvicorn`` API as processes of a
  test, configured through their environment only; ``sender``: a traced producer in the test process.
- ``smtp``: what those processes send email to; they export spans to the ``otlp_receiver`` package's receiver
  (the ``otlp_receiver`` fixture).
- ``servers`` (where the servers are; skip locally, fail on CI), ``ports``, ``polling``, ``rabbitmqctl``.
- ``fixtures``: the shared pytest fixtures (loaded by tests/conftest.py); the suites' own are in their conftest.py.
"""

from __future__ import annotations

__all__: list[str] = []
