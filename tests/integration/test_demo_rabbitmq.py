"""``tracedq demo --broker amqp://...``: the demo flows through real RabbitMQ and a real worker process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import RABBITMQ_URL, require_rabbitmq
from tests.processes import PROJECT_ROOT

pytestmark = pytest.mark.rabbitmq


@pytest.mark.timeout(180)
def test_demo_against_rabbitmq_draws_spans_from_both_processes(tmp_path: Path) -> None:
    """Five traces; the worker's spans (service tracedq-worker) join the CLI's send spans in each."""
    require_rabbitmq()
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "none"}
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "demo", "--broker", RABBITMQ_URL, "--spans-file", str(tmp_path / "s.jsonl")],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert out.count("\ntrace ") + out.startswith("trace ") == 5
    assert "ERROR SMTP 421" in out and "outcome=retrying retries=0" in out
    assert "outcome=success retries=1" in out  # the retried email, processed by the worker process
    assert "outcome=dead_lettered retries=0 dead_letter_reason=throws" in out
    assert "reserve inventory" in out and "send welcome email" in out  # service spans from the worker
    assert "4 emails delivered to the demo SMTP sink" in out
    assert "[tracedq-worker]" in out and "[tracedq-demo]" in out  # the trace crosses processes
