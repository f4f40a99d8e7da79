"""``make demo`` runs with no services and draws the traces it must show."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_draws_success_delay_and_dead_letter_traces() -> None:
    """Three traces: a success, a delayed hop, and a retried message that ends dead-lettered."""
    env = {**os.environ, "BROKER_URL": "memory://", "OTEL_TRACES_EXPORTER": "none"}
    result = subprocess.run(
        [sys.executable, "-m", "cli.demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("\ntrace ") + out.startswith("trace ") == 3
    assert "send greetings.DQ" in out
    assert "outcome=success retries=0" in out
    assert "outcome=dead_lettered retries=1 dead_letter_reason=retries_exhausted" in out
    assert "nack greetings" in out
    assert "log warning message_dead_lettered" in out
