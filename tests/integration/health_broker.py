"""A tests-only broker module: ``actors.broker``'s broker plus :class:`worker_health.heartbeat.Heartbeat` with a server.

``dramatiq --skip-logging tests.integration.health_broker -p 2 -t 1`` runs the real actors with heartbeats
and the health endpoint, configured from ``TRACEDQ_TEST_HEARTBEAT_DIR``, ``TRACEDQ_TEST_HEARTBEAT_INTERVAL``
and ``TRACEDQ_TEST_HEALTH_PORT`` (test-only variables; production wires the middleware in
``actors/broker.py`` from settings). Its fork function must live here, not in ``worker_health.heartbeat``: the fork
imports it by name and finds the middleware on *this* module's broker.
"""

from __future__ import annotations

import os
from pathlib import Path

from actors.broker import broker, settings
from observability.sdk import render_prometheus
from worker_health.heartbeat import HealthServer, Heartbeat, serve_for

__all__ = ["broker", "serve_test_health"]


def serve_test_health() -> int:
    """The fork function: the endpoint of the Heartbeat added below."""
    return serve_for(broker)


# Replace the Heartbeat that actors/broker.py configured from settings: one per broker, with this test's
# directory and port (the fork serves the first Heartbeat it finds).
broker.middleware[:] = [m for m in broker.middleware if not isinstance(m, Heartbeat)]
broker.add_middleware(
    Heartbeat(
        Path(os.environ["TRACEDQ_TEST_HEARTBEAT_DIR"]),
        interval=float(os.environ.get("TRACEDQ_TEST_HEARTBEAT_INTERVAL", "0.25")),
        server=HealthServer(
            heartbeat_dir=Path(os.environ["TRACEDQ_TEST_HEARTBEAT_DIR"]),
            broker_url=settings.broker_url,
            database_url=settings.database_url,
            host="127.0.0.1",
            port=int(os.environ["TRACEDQ_TEST_HEALTH_PORT"]),
            max_age=float(os.environ.get("TRACEDQ_TEST_HEALTH_MAX_AGE", "5")),
        ),
        fork=serve_test_health,
        metrics_snapshot=render_prometheus,
    )
)
