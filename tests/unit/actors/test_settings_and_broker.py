"""Settings come from the environment once; the broker they build has our middleware first."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from dramatiq.brokers.stub import StubBroker

from actors.broker import build_broker
from actors.settings import DEFAULT_BROKER_URL, load_settings
from observability import LogContext, Tracing


def test_defaults_point_at_local_rabbitmq() -> None:
    """With nothing set, the worker talks to RabbitMQ on loopback with the parent policy."""
    settings = load_settings({})
    assert settings.broker_url == DEFAULT_BROKER_URL == "amqp://guest:guest@127.0.0.1:5672/"
    assert settings.trace_parent_policy == "parent" and not settings.trace_capture_args


def test_bad_values_fail_loudly() -> None:
    """An unknown policy or log format is an error at start, not a silent default."""
    with pytest.raises(ValueError, match="TRACE_PARENT_POLICY"):
        load_settings({"TRACE_PARENT_POLICY": "sometimes"})
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        load_settings({"LOG_FORMAT": "xml"})


def test_memory_url_builds_a_stub_broker_with_tracing_first() -> None:
    """``memory://`` selects the StubBroker; Tracing is first and LogContext second, defaults kept."""
    broker = build_broker(load_settings({"BROKER_URL": "memory://", "TRACE_PARENT_POLICY": "link"}))
    assert isinstance(broker, StubBroker)
    assert isinstance(broker.middleware[0], Tracing) and broker.middleware[0].parent_policy == "link"
    assert isinstance(broker.middleware[1], LogContext)
    names = [type(m).__name__ for m in broker.middleware]
    for default in ("AgeLimit", "TimeLimit", "ShutdownNotifications", "Callbacks", "Pipelines", "Retries"):
        assert default in names
    assert names.count("DaemonAsyncIO") == 1  # Dramatiq's AsyncIO, its loop thread a daemon (worker_health)


def test_importing_actors_sets_the_global_broker() -> None:
    """A producer that imports ``actors`` sends through the same traced broker the worker uses."""
    code = (
        "import dramatiq, actors; from observability import Tracing; "
        "assert dramatiq.get_broker() is actors.broker is actors.greet.broker; "
        "assert isinstance(actors.broker.middleware[0], Tracing); print('ok')"
    )
    env = {**os.environ, "BROKER_URL": "memory://", "OTEL_TRACES_EXPORTER": "none"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr
