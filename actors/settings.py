"""The only reader of ``os.environ`` in the project (the OpenTelemetry SDK reads its own ``OTEL_*``)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from worker_health.heartbeat_files import HEARTBEAT_DIR_VARIABLE_DEFAULT, MAX_AGE_VARIABLE_DEFAULT

__all__ = ["MIN_API_KEY_LENGTH", "Settings", "api_key_digest", "load_settings"]

DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"

#: Shorter keys are refused: the keys are kept as plain SHA-256 digests, which is only safe for random keys.
MIN_API_KEY_LENGTH = 32

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def api_key_digest(key: str) -> bytes:
    """The SHA-256 digest an API key is kept and compared as (never the key itself).

    A fast hash is enough here, unlike for passwords: a KDF (bcrypt, argon2) slows down guessing a
    low-entropy secret from a leaked digest, but a key of at least 32 random characters has far more
    entropy than any number of SHA-256 guesses can cover, and a KDF would cost every request tens of ms.
    """
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True)
class Settings:
    """Process settings, read once.

    ``broker_url``: ``amqp://...`` for RabbitMQ; ``memory://`` selects Dramatiq's in-process StubBroker.
    ``rabbitmq_queue_type``: ``classic`` or ``quorum`` (replicated): the type of every durable queue the broker
    declares. Every process (workers, scheduler, API) must agree: a queue never changes type.
    ``rabbitmq_consumer_timeout_ms``: the server's ``consumer_timeout`` (0: it has none); workers hold a delayed
    message for at most half of it and park the ones due later (messaging/delay_parking.py).
    ``log_format``: ``json``, ``console`` or ``auto`` (JSON unless stdout is a TTY).
    ``trace_parent_policy``: ``parent`` (one trace per message flow) or ``link`` (a trace per delivery).
    ``trace_capture_args``: put actor arguments on process spans (off: they may hold personal data).
    ``span_export``: ``process`` (OTLP spans are encoded and sent by an export process per worker process, off the
    worker's GIL) or ``inline`` (the SDK's ``BatchSpanProcessor`` in the worker process).
    ``database_url``: SQLAlchemy URL; a SQLite file by default, ``postgresql+psycopg://...`` in production.
    ``redis_url``: backend of the email rate limiter; without it the limit is per process, in memory.
    ``email_rate_limit``: emails per second across all workers sharing ``redis_url``.
    ``jaeger_url``: the Jaeger UI the API links each accepted message's trace to.
    ``api_max_body_bytes``: the largest request body the API reads (413 above it).
    ``api_auth``: the API wants ``Authorization: Bearer <key>`` on every route but health (off: only for local
    development, and only when asked for by ``API_AUTH=off``).
    ``api_key_digests``: SHA-256 digests of the accepted keys (``API_KEYS`` comma-separated, plus the file
    ``API_KEYS_FILE``, one per line or comma-separated); several at once, so a key can be rotated without
    downtime. The keys themselves are not kept.
    ``api_metrics_public`` / ``api_docs_public``: ``/metrics`` and ``/docs``, ``/redoc``, ``/openapi.json``
    answer without a key (the default for both: scrapers carry no key, and the document holds no data).
    ``worker_heartbeat_dir`` / ``_interval``: where each worker process writes its liveness heartbeat.
    ``health_host`` / ``health_port``: the worker tree's readiness/metrics endpoint (one per tree; 0 = off).
    ``health_max_age``: seconds after which a heartbeat counts as stale.
    ``health_consumer_stall`` / ``health_time_limit_grace``: when a consumer without a sign of life, or a message
    past its actor's time limit, counts as stuck (docs/health.md).
    """

    broker_url: str = DEFAULT_BROKER_URL
    rabbitmq_queue_type: Literal["classic", "quorum"] = "classic"
    rabbitmq_consumer_timeout_ms: int = 30 * 60 * 1000
    database_url: str = "sqlite:///tracedq.db"
    redis_url: str | None = None
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_sender: str = "tracedq@example.com"
    email_rate_limit: int = 10
    jaeger_url: str = "http://localhost:16686"
    api_max_body_bytes: int = 64 * 1024
    api_auth: bool = True
    api_key_digests: tuple[bytes, ...] = ()
    api_metrics_public: bool = True
    api_docs_public: bool = True
    worker_heartbeat_dir: str = HEARTBEAT_DIR_VARIABLE_DEFAULT
    worker_heartbeat_interval: float = 5.0
    health_host: str = "0.0.0.0"
    health_port: int | None = 9200
    health_max_age: float = MAX_AGE_VARIABLE_DEFAULT
    health_consumer_stall: float = 60.0
    health_time_limit_grace: float = 30.0
    log_level: str = "INFO"
    log_format: Literal["json", "console", "auto"] = "auto"
    trace_parent_policy: Literal["parent", "link"] = "parent"
    trace_capture_args: bool = False
    span_export: Literal["process", "inline"] = "process"

    @property
    def uses_stub_broker(self) -> bool:
        """True when ``broker_url`` asks for the in-process broker."""
        return self.broker_url.startswith(("memory://", "stub://"))


def _flag(name: str, raw: str | None, default: bool) -> bool:
    """A yes/no setting; anything else fails, so a typo never turns a protection off."""
    value = (raw or "").strip().lower()
    if not value:
        return default
    if value not in _TRUE + _FALSE:
        raise ValueError(f"{name} must be one of {'/'.join(_TRUE + _FALSE)}, not {value!r}")
    return value in _TRUE


def _api_key_digests(env: Mapping[str, str]) -> tuple[bytes, ...]:
    """Digests of the keys in ``API_KEYS`` and in the file ``API_KEYS_FILE`` (blank lines and ``#`` lines skipped)."""
    keys = [key.strip() for key in env.get("API_KEYS", "").split(",")]
    path = env.get("API_KEYS_FILE", "").strip()
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"API_KEYS_FILE={path!r} cannot be read: {exc.strerror or exc}") from exc
        lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
        keys += [key.strip() for line in lines for key in line.split(",")]
    keys = [key for key in keys if key]
    short = sum(1 for key in keys if len(key) < MIN_API_KEY_LENGTH)
    if short:
        # The count only: the key itself never reaches an error message or a log.
        raise ValueError(
            f"{short} API key(s) shorter than {MIN_API_KEY_LENGTH} characters: use random keys, "
            "e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    return tuple(dict.fromkeys(api_key_digest(key) for key in keys))


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from the environment, failing loudly on values we do not understand."""
    env = os.environ if environ is None else environ
    log_format = env.get("LOG_FORMAT", "auto")
    if log_format not in ("json", "console", "auto"):
        raise ValueError(f"LOG_FORMAT must be json, console or auto, not {log_format!r}")
    policy = env.get("TRACE_PARENT_POLICY", "parent")
    if policy not in ("parent", "link"):
        raise ValueError(f"TRACE_PARENT_POLICY must be parent or link, not {policy!r}")
    span_export = env.get("SPAN_EXPORT", "process")
    if span_export not in ("process", "inline"):
        raise ValueError(f"SPAN_EXPORT must be process or inline, not {span_export!r}")
    queue_type = env.get("RABBITMQ_QUEUE_TYPE", "classic")
    if queue_type not in ("classic", "quorum"):
        raise ValueError(f"RABBITMQ_QUEUE_TYPE must be classic or quorum, not {queue_type!r}")
    return Settings(
        broker_url=env.get("BROKER_URL", DEFAULT_BROKER_URL),
        rabbitmq_queue_type=queue_type,  # type: ignore[arg-type]
        rabbitmq_consumer_timeout_ms=int(env.get("RABBITMQ_CONSUMER_TIMEOUT_MS", str(30 * 60 * 1000))),
        database_url=env.get("DATABASE_URL", "sqlite:///tracedq.db"),
        redis_url=env.get("REDIS_URL") or None,
        smtp_host=env.get("SMTP_HOST", "127.0.0.1"),
        smtp_port=int(env.get("SMTP_PORT", "1025")),
        smtp_sender=env.get("SMTP_SENDER", "tracedq@example.com"),
        email_rate_limit=int(env.get("EMAIL_RATE_LIMIT", "10")),
        jaeger_url=env.get("JAEGER_URL", "http://localhost:16686").rstrip("/"),
        api_max_body_bytes=int(env.get("API_MAX_BODY_BYTES", str(64 * 1024))),
        api_auth=_flag("API_AUTH", env.get("API_AUTH"), True),
        api_key_digests=_api_key_digests(env),
        api_metrics_public=_flag("API_METRICS_PUBLIC", env.get("API_METRICS_PUBLIC"), True),
        api_docs_public=_flag("API_DOCS_PUBLIC", env.get("API_DOCS_PUBLIC"), True),
        worker_heartbeat_dir=env.get("WORKER_HEARTBEAT_DIR", HEARTBEAT_DIR_VARIABLE_DEFAULT),
        worker_heartbeat_interval=float(env.get("WORKER_HEARTBEAT_INTERVAL", "5")),
        health_host=env.get("HEALTH_HOST", "0.0.0.0"),
        health_port=int(env.get("HEALTH_PORT", "9200") or 0) or None,
        health_max_age=float(env.get("HEALTH_MAX_AGE", str(MAX_AGE_VARIABLE_DEFAULT))),
        health_consumer_stall=float(env.get("HEALTH_CONSUMER_STALL", "60")),
        health_time_limit_grace=float(env.get("HEALTH_TIME_LIMIT_GRACE", "30")),
        log_level=env.get("LOG_LEVEL", "INFO"),
        log_format=log_format,  # type: ignore[arg-type]
        trace_parent_policy=policy,  # type: ignore[arg-type]
        trace_capture_args=env.get("TRACE_CAPTURE_ARGS", "").lower() in ("1", "true", "yes"),
        span_export=span_export,  # type: ignore[arg-type]
    )
