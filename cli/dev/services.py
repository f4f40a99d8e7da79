"""The processes ``tracedq dev`` runs, in start order: each one's command, environment and readiness check.

Stopping goes in reverse: the API first (no new work comes in), then the scheduler, then the worker (it
finishes its messages and flushes their spans to the collector), then the SMTP sink the worker was still
sending to, and the collector last, so it is there for every span the others flush on their way out.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cli.dev.api_key import api_key_env
from cli.dev.config import DevConfig

__all__ = ["Service", "database_step", "plan", "workers_beating"]

# Short export delays: a span or log record reaches the store within a fraction of a second, which is what a
# developer watching `trace tail` expects. The services' own defaults (1 s, 5 s) suit production.
_EXPORT_DELAY_MS = "200"


@dataclass(frozen=True)
class Service:
    """One process to run: ``ready(pid)`` says when it can serve; ``*_timeout`` are seconds."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ready: Callable[[int], bool]
    ready_timeout: float
    stop_timeout: float


def database_step(config: DevConfig, environ: Mapping[str, str]) -> Service:
    """The one-shot process that prepares the database (``cli/dev/database.py``), run before any service."""
    return Service(
        name="db",
        argv=[sys.executable, "-m", "cli.dev.database", config.database_url],
        env={**_base_env(config, environ), "BROKER_URL": config.broker_url, "HEALTH_PORT": "0"},
        ready=lambda _pid: True,
        ready_timeout=60,  # for a step: how long it may run
        stop_timeout=5,
    )


def _base_env(config: DevConfig, environ: Mapping[str, str]) -> dict[str, str]:
    # Without the caller's OTEL_*: each service gets ours, and the helpers none (they must not trace themselves).
    base = {key: value for key, value in environ.items() if not key.startswith("OTEL_")}
    base["PYTHONUNBUFFERED"] = "1"  # lines reach our merged output as they are written, not in 8 KiB blocks
    base["OTEL_SDK_DISABLED"] = "true"
    base.setdefault("LOG_FORMAT", "console" if config.console_logs else "json")
    return base


def plan(config: DevConfig, environ: Mapping[str, str]) -> list[Service]:
    """The services of one run, in start order; ``environ`` is the environment they inherit (minus ``OTEL_*``)."""
    python = sys.executable
    base = _base_env(config, environ)
    traced = {key: value for key, value in base.items() if key != "OTEL_SDK_DISABLED"}
    app = {
        **traced,
        "BROKER_URL": config.broker_url,
        "DATABASE_URL": config.database_url,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(config.smtp_port),
        "HEALTH_PORT": "0",
        "WORKER_HEARTBEAT_DIR": str(config.heartbeat_dir),
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{config.collector_port}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": _EXPORT_DELAY_MS,
        "OTEL_BLRP_SCHEDULE_DELAY": _EXPORT_DELAY_MS,
    }
    services = [
        _listener(
            "collector",
            [
                python,
                "-m",
                "cli.dev.collector",
                "--store",
                str(config.store_path),
                "--max-spans",
                str(config.max_spans),
            ],
            config.collector_port,
            env=base,
            stop_timeout=15,
        ),
        _listener(
            "smtp",
            [python, "-m", "cli.dev.smtp_sink", "--mailbox", str(config.mailbox_dir)],
            config.smtp_port,
            env=base,
            stop_timeout=10,
        ),
        Service(
            name="worker",
            argv=[
                python,
                "-m",
                "dramatiq",
                "--skip-logging",
                "actors",
                "-p",
                str(config.processes),
                "-t",
                str(config.threads),
                "--worker-shutdown-timeout",
                "30000",
            ],
            env={**app, "OTEL_SERVICE_NAME": "tracedq-worker"},
            ready=lambda pid: workers_beating(config.heartbeat_dir, pid, config.processes),
            ready_timeout=120,
            stop_timeout=45,
        ),
    ]
    if config.scheduler:
        services.append(
            Service(
                name="scheduler",
                argv=[*_script(python, "periodiq"), "actors"],
                env={**app, "OTEL_SERVICE_NAME": "tracedq-scheduler"},
                ready=lambda _pid: True,
                ready_timeout=0,
                stop_timeout=15,
            )
        )
    services.append(
        Service(
            name="api",
            argv=[
                python,
                "-m",
                "uvicorn",
                "api.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(config.api_port),
                "--timeout-graceful-shutdown",
                "10",
            ],
            # The API's /metrics renders the Prometheus registry, as under `make api`; its key as there too.
            env={
                **app,
                **api_key_env(config.api_key_path, environ),
                "OTEL_SERVICE_NAME": "tracedq-api",
                "OTEL_METRICS_EXPORTER": "prometheus",
            },
            ready=lambda _pid: _listening(config.api_port),
            ready_timeout=60,
            stop_timeout=15,
        )
    )
    return services


def _listener(name: str, argv: list[str], port: int, *, env: dict[str, str], stop_timeout: float) -> Service:
    """One of our helpers, run as ``argv --port PORT``: ready once it accepts connections on PORT."""
    return Service(
        name=name,
        argv=[*argv, "--port", str(port)],
        env=env,
        ready=lambda _pid: _listening(port),
        ready_timeout=30,
        stop_timeout=stop_timeout,
    )


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def workers_beating(directory: Path, main_pid: int, processes: int) -> bool:
    """Whether ``processes`` worker processes of the tree ``main_pid`` wrote a running heartbeat.

    The files of ``worker_health.heartbeat_files``, read here without importing ``actors`` (which builds the broker).
    """
    beating = 0
    for path in directory.glob("worker-*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):  # being replaced, or gone: the next poll reads it
            continue
        beating += record.get("main_pid") == main_pid and record.get("state") == "running"
    return beating >= processes


def _script(python: str, name: str) -> list[str]:
    """The console script ``name`` installed beside ``python`` (periodiq has no ``python -m`` form)."""
    found = shutil.which(name, path=str(Path(python).parent))
    if found is not None:
        return [found]
    return [python, "-c", f"import sys; from {name} import entrypoint; sys.exit(entrypoint())"]
