"""A real ``dramatiq`` worker tree of a test: its command line, and an environment wired only to the test's servers.

Every worker the suites start is configured through its environment only, as deployed. ``worker_environment``
drops what the test process inherited that would point a worker elsewhere (another collector, broker, database
or health port) and sets the test's own; ``Workers`` starts processes with it and kills every one at the end.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tests.environment.processes import ServiceProcess

if TYPE_CHECKING:
    from otlp_receiver import OtlpReceiver
    from tests.environment.smtp import SmtpServer
    from tests.environment.stack import Stack

__all__ = ["DRAMATIQ", "Workers", "dramatiq_argv", "worker_environment"]

DRAMATIQ = Path(sys.prefix) / "bin" / "dramatiq"

# Inherited variables that would point a worker somewhere else than this test's servers.
_INHERITED_OUT = ("OTEL_", "LOG_", "TRACE_", "SMTP_", "HEALTH_", "WORKER_", "dramatiq_")
_SETTINGS = ("BROKER_URL", "DATABASE_URL", "REDIS_URL", "EMAIL_RATE_LIMIT", "JAEGER_URL", "RABBITMQ_QUEUE_TYPE")


def dramatiq_argv(*, processes: int = 1, threads: int = 2, module: str = "actors") -> list[str]:
    """``dramatiq --skip-logging <module> -p N -t N`` from this venv."""
    return [str(DRAMATIQ), "--skip-logging", module, "-p", str(processes), "-t", str(threads)]


def worker_environment(
    *, broker_url: str, database_url: str, otlp_endpoint: str, service_name: str, state_dir: Path, **extra: str
) -> dict[str, str]:
    """The environment of a ``dramatiq actors`` worker (or the API) exporting spans to ``otlp_endpoint``.

    Loopback only: the health endpoint (0.0.0.0:9200 by default) is off, heartbeats go under ``state_dir``.
    ``extra`` overrides or adds variables.
    """
    variables = {
        key: value for key, value in os.environ.items() if not key.startswith(_INHERITED_OUT) and key not in _SETTINGS
    }
    variables.update(
        BROKER_URL=broker_url,
        DATABASE_URL=database_url,
        HEALTH_PORT="0",
        WORKER_HEARTBEAT_DIR=str(state_dir / "heartbeats"),
        LOG_FORMAT="json",
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_SERVICE_NAME=service_name,
        OTEL_BSP_SCHEDULE_DELAY="200",
    )
    variables.update(extra)
    return variables


class Workers:
    """Starts processes of one test with the environment ``environment(service_name, **extra)`` builds; ``kill``
    SIGKILLs every one started, whatever happened (a fixture calls it at teardown)."""

    def __init__(self, environment: Callable[..., dict[str, str]], log_dir: Path) -> None:
        self.environment, self.log_dir = environment, log_dir
        self.started: list[ServiceProcess] = []

    @classmethod
    def on(
        cls, stack: Stack, smtp_server: SmtpServer, receiver: OtlpReceiver, log_dir: Path, **defaults: str
    ) -> Workers:
        """Processes on ``stack``'s vhost and database, sending email to ``smtp_server`` and spans to ``receiver``;
        ``defaults`` are environment variables of every one (``start`` may override them)."""

        def environment(service_name: str, **extra: str) -> dict[str, str]:
            return worker_environment(
                broker_url=stack.broker_url,
                database_url=stack.database_url,
                otlp_endpoint=receiver.endpoint,
                service_name=service_name,
                state_dir=log_dir,
                SMTP_HOST=smtp_server.host,
                SMTP_PORT=str(smtp_server.port),
                **{**defaults, **extra},
            )

        return cls(environment, log_dir)

    def start(
        self, argv: list[str], *, name: str, service_name: str, base_url: str = "", **extra_env: str
    ) -> ServiceProcess:
        """Start ``argv`` as ``name`` (its output files under the log directory); returns it running."""
        env = self.environment(service_name, **extra_env)
        process = ServiceProcess(argv, env, self.log_dir, name=name, base_url=base_url)
        self.started.append(process)
        return process.start()

    def kill(self) -> None:
        for process in self.started:
            process.kill()
