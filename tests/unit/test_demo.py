"""``make demo`` runs with no services, draws the traces it must show, and ``tracedq trace`` reads them back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from cli.main import tracedq

ROOT = Path(__file__).resolve().parents[2]


def run_demo(spans_file: Path, **env_extra: str) -> str:
    env = {**os.environ, "BROKER_URL": "memory://", "OTEL_TRACES_EXPORTER": "none", **env_extra}
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "demo", "--spans-file", str(spans_file)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_demo_draws_every_flow_and_writes_otlp_json(tmp_path: Path) -> None:
    """Five traces: reserved, rejected for stock, email retried, user registered, invalid payload dead-lettered."""
    spans_file = tmp_path / "spans.jsonl"
    out = run_demo(spans_file)
    assert out.count("\ntrace ") + out.startswith("trace ") == 5
    assert "demo: an order short of stock" in out
    assert "ERROR EmailUnavailable: SMTP 421: try again later (demo) outcome=retrying retries=0" in out
    assert "send email.DQ" in out
    assert "outcome=success retries=1" in out
    assert "outcome=dead_lettered retries=0 dead_letter_reason=throws" in out
    assert "nack orders" in out
    assert "log warning message_dead_lettered" in out
    assert "reserve inventory" in out and "send welcome email" in out
    document = json.loads(spans_file.read_text().splitlines()[0])
    span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert len(span["traceId"]) == 32 and len(span["spanId"]) == 16  # OTLP/JSON hex ids, not base64


def test_trace_list_and_show_read_the_demo_file(tmp_path: Path) -> None:
    """``trace list`` names each trace with its outcome; ``trace show`` draws one by id prefix."""
    spans_file = tmp_path / "spans.jsonl"
    out = run_demo(spans_file)
    runner = CliRunner()
    listed = runner.invoke(tracedq, ["trace", "list", "--spans-file", str(spans_file)])
    assert listed.exit_code == 0, listed.output
    rows = listed.output.splitlines()
    assert len(rows) == 5
    retried = next(row for row in rows if "email fails once" in row)
    assert " error " in retried  # the first email attempt failed
    trace_id = retried.split()[0]
    shown = runner.invoke(tracedq, ["trace", "show", trace_id[:10], "--spans-file", str(spans_file)])
    assert shown.exit_code == 0, shown.output
    assert shown.output.splitlines()[0].startswith(f"trace {trace_id}")
    assert shown.output.strip() in out
    missing = runner.invoke(tracedq, ["trace", "show", "ffffffff", "--spans-file", str(spans_file)])
    assert missing.exit_code == 1
    assert "0 traces match" in missing.output


def test_demo_leaves_no_temporary_folder(tmp_path: Path) -> None:
    """Its SQLite database lives in a temporary folder that is removed when the demo ends."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    run_demo(tmp_path / "spans.jsonl", TMPDIR=str(temp))
    assert list(temp.iterdir()) == []
