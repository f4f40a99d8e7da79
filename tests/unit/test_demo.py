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
    store = spans_file.with_name("traces.db")
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "demo", "--spans-file", str(spans_file), "--store", str(store)],
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


def test_trace_list_and_show_read_the_demo_traces(tmp_path: Path) -> None:
    """The demo's traces are in the local store and in its spans file; ``trace list`` and ``show`` read either."""
    spans_file = tmp_path / "spans.jsonl"
    store = tmp_path / "traces.db"
    out = run_demo(spans_file)
    runner = CliRunner()
    for source in (["--store", str(store)], ["--spans-file", str(spans_file)]):
        listed = runner.invoke(tracedq, ["trace", "list", *source])
        assert listed.exit_code == 0, listed.output
        rows = listed.output.splitlines()[1:]
        # id, date, time, duration, "ms", spans, outcome, root
        outcomes = {row.split(maxsplit=7)[7]: row.split()[6] for row in rows}
        assert outcomes == {
            "demo: an order with stock": "success",
            "demo: an order short of stock": "success",  # rejected for stock: a business outcome
            "demo: an order whose email fails once": "success",  # the failed attempt was retried: not the flow's end
            "demo: a user registers": "success",
            "demo: an invalid payload from a foreign producer": "dead_lettered",
        }
    retried = next(row for row in rows if "email fails once" in row)
    trace_id = retried.split()[0]
    shown = runner.invoke(tracedq, ["trace", "show", trace_id[:10], "--store", str(store)])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0].startswith(f"trace {trace_id}")
    assert lines[1] == f"  outcome success, {retried.split()[5]} spans from tracedq-demo"
    assert "\n".join([lines[0], *lines[2:]]) in out  # the same drawing the demo printed
    missing = runner.invoke(tracedq, ["trace", "show", "ffffffff", "--store", str(store)])
    assert missing.exit_code == 1
    assert missing.output.splitlines()[-1] == f"Error: no trace ffffffff... in {store} (ask Jaeger with --jaeger)"


def test_demo_leaves_no_temporary_folder(tmp_path: Path) -> None:
    """Its SQLite database lives in a temporary folder that is removed when the demo ends."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    run_demo(tmp_path / "spans.jsonl", TMPDIR=str(temp))
    assert list(temp.iterdir()) == []
