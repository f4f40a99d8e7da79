"""``tracedq dev`` as a user runs it: a subprocess on a vhost of its own, an order POSTed to its API, the whole
trace found through ``tracedq trace list / show``, the email at its SMTP sink, then SIGTERM and nothing left.

Everything is real: RabbitMQ, the API (uvicorn), the worker tree (dramatiq, with its span export processes),
the scheduler (periodiq), the SMTP sink and the collector, each a process ``tracedq dev`` started. The trace
is read back from the store the collector wrote, and its tree is checked span by span.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from cli.main import tracedq
from cli.spanfile import SpanView
from cli.tracestore.flow import summarize
from cli.tracestore.store import StoreError, TraceStore
from tests.environment.polling import wait_until
from tests.environment.ports import free_port
from tests.environment.processes import PROJECT_ROOT, ServiceProcess, proc_stat, proc_stats
from tests.environment.vhost import VhostProbe, own_vhost

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(420)]

ORDER = {"order_id": "dev-1", "customer_email": "ada@example.com", "lines": [{"sku": "SKU-APPLE", "quantity": 2}]}
# (span, its parent) for every span of the order's trace but the SQL statements; names are the store's.
TREE = {
    ("POST /orders", None),
    ("send orders", "POST /orders"),
    ("process orders", "send orders"),
    ("place order", "process orders"),
    ("send inventory", "process orders"),
    ("process inventory", "send inventory"),
    ("reserve inventory", "process inventory"),
    ("send email", "process inventory"),
    ("process email", "send email"),
    ("notify customer", "process email"),
    ("smtp send", "notify customer"),
}
SQL = re.compile(r"^(connect$|(SELECT|INSERT|UPDATE|DELETE) )")  # the SQLAlchemy instrumentation's spans
STOP_ORDER = ["api", "scheduler", "worker", "smtp", "collector"]


def process_tree(root: int) -> dict[int, str]:
    """Every live descendant of ``root`` (and root): pid -> its start time, which tells a reused pid apart."""
    stats = proc_stats()
    parents = {pid: int(fields[1]) for pid, fields in stats.items()}
    starts = {pid: fields[19] for pid, fields in stats.items()}
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return {pid: starts[pid] for pid in tree if pid in starts}


def still_running(pid: int, start: str) -> bool:
    fields = proc_stat(pid)
    return fields is not None and fields[19] == start and fields[0] != "Z"


class Dev:
    """A running ``tracedq dev`` and where it keeps things."""

    def __init__(self, tmp_path: Path, broker_url: str) -> None:
        self.state = tmp_path / "state"
        self.api_port, self.smtp_port, self.collector_port = free_port(), free_port(), free_port()
        self.argv = [sys.executable, "-m", "cli.main", "dev", "--broker", broker_url]
        self.argv += ["--database-url", f"sqlite:///{tmp_path / 'dev.db'}", "--state-dir", str(self.state)]
        self.argv += ["--api-port", str(self.api_port), "--smtp-port", str(self.smtp_port)]
        self.argv += ["--collector-port", str(self.collector_port)]
        self.process = ServiceProcess(self.argv, dict(os.environ), tmp_path / "logs", name="dev")

    @property
    def store_path(self) -> Path:
        return self.state / "traces.db"

    def lines(self) -> list[str]:
        return self.process.output().splitlines()


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Dev]:
    with own_vhost("tracedq_dev") as vhost:
        running = Dev(tmp_path, VhostProbe(vhost).broker_url)
        running.process.start()
        try:
            ready = wait_until(lambda: any(" | ready: API " in line for line in running.lines()), timeout=240)
            assert ready, running.process.describe()
            yield running
        finally:
            stop_for_good(running)


def stop_for_good(dev: Dev) -> None:
    """After a failed test: the ordered stop, then SIGKILL for any of its processes still there.

    The services run in sessions of their own, so killing ``tracedq dev``'s process group would not reach them.
    """
    proc = dev.process.proc
    if proc is None or proc.poll() is not None:
        return
    tree = process_tree(proc.pid)
    proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=120)
    for pid, start in tree.items():
        if still_running(pid, start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    dev.process.kill()


def order_spans(dev: Dev, trace_id: str) -> list[SpanView]:
    """The order's trace once its email went out, its flow is done and every parent arrived (else empty).

    Processes export on their own schedules: the worker's spans may be stored before the API's.
    """
    try:
        with TraceStore(dev.store_path) as store:
            spans = store.spans(trace_id)
    except StoreError:
        return []
    ids = {s.span_id for s in spans}
    whole = all(s.parent_id in ids for s in spans if s.parent_id)
    if whole and any(s.name == "smtp send" for s in spans) and summarize(spans).outcome == "success":
        return spans
    return []


def test_dev_runs_the_whole_flow_and_stops_with_nothing_left(dev: Dev) -> None:
    assert dev.process.proc is not None
    pids = process_tree(dev.process.proc.pid)
    assert len(pids) >= 7, dev.process.describe()  # dev, collector, smtp, worker main + process, scheduler, api

    # tracedq dev made the API's key in its state dir (the API refuses to start without one), mode 600.
    key_file = dev.state / "api-key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    auth = {"Authorization": f"Bearer {key_file.read_text().strip()}"}
    assert httpx.post(f"http://127.0.0.1:{dev.api_port}/orders", json=ORDER, timeout=30).status_code == 401
    accepted = httpx.post(f"http://127.0.0.1:{dev.api_port}/orders", json=ORDER, headers=auth, timeout=30)
    assert accepted.status_code == 202, accepted.text
    trace_id = accepted.json()["trace_id"]
    assert wait_until(lambda: bool(order_spans(dev, trace_id)), timeout=120), dev.process.describe()
    pids.update(process_tree(dev.process.proc.pid))  # the span export processes start with the first span

    # The tree, from the store: one trace across the API and the worker, every span under the right parent.
    spans = order_spans(dev, trace_id)
    by_id = {s.span_id: s for s in spans}
    named = {s.name: s for s in spans}
    assert {(s.name, by_id[s.parent_id].name if s.parent_id else None) for s in spans if not SQL.match(s.name)} == TREE
    sql_parents = {by_id[s.parent_id].name for s in spans if SQL.match(s.name)}
    # The API records the accepted order (its idempotency) before publishing: SQL under POST /orders too.
    assert sql_parents == {"POST /orders", "place order", "reserve inventory", "notify customer"}
    assert {s.name for s in spans if s.name.startswith("INSERT ") and s.parent_id == named["place order"].span_id}
    assert named["POST /orders"].service == "tracedq-api"
    assert {named[n].service for n in ("process orders", "process email", "smtp send")} == {"tracedq-worker"}
    assert [named[f"process {q}"].attributes["dramatiq.message.outcome"] for q in ("orders", "inventory", "email")] == [
        "success"
    ] * 3

    runner = CliRunner()
    listed = runner.invoke(tracedq, ["trace", "list", "--store", str(dev.store_path), "--actor", "notify_customer"])
    assert listed.exit_code == 0, listed.output
    rows = listed.output.splitlines()[1:]
    assert [row.split()[0] for row in rows] == [trace_id]
    assert rows[0].split()[5:] == [str(len(spans)), "success", "POST", "/orders"]

    shown = runner.invoke(tracedq, ["trace", "show", trace_id[:8], "--store", str(dev.store_path)])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0].startswith(f"trace {trace_id}  (")
    assert lines[1] == f"  outcome success, {len(spans)} spans from tracedq-api, tracedq-worker"
    labels = [line.split("|")[0].rstrip() for line in lines[2:] if "|" in line]
    assert [label for label in labels if not SQL.match(label.strip())] == [
        "  POST /orders",
        "    send orders",
        "      process orders",
        "        place order",
        "        send inventory",
        "          process inventory",
        "            reserve inventory",
        "            send email",
        "              process email",
        "                notify customer",
        "                  smtp send",
    ]
    assert "    log info    customer_notified  [tracedq-worker]" in lines  # log records came through OTLP too

    # The email reached the sink, whole in the mailbox, masked in the merged output.
    emails = runner.invoke(tracedq, ["dev", "emails", "--state-dir", str(dev.state)])
    assert emails.exit_code == 0, emails.output
    assert emails.output.splitlines()[0].split("  ")[1:3] == ["to ada@example.com", "Order dev-1: reserved"]
    assert any(
        line.startswith("smtp      | mail to a***@example.com: Order dev-1: reserved  (") for line in dev.lines()
    )

    # A second run on the same state, and one whose port is taken: refused before starting anything.
    second = subprocess.run(dev.argv, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert second.returncode == 1
    assert second.stdout.splitlines() == [
        f"dev       | tracedq dev is already running on {dev.state.resolve()} (pid {dev.process.proc.pid}): "
        f"stop it first (Ctrl-C in its terminal, or kill {dev.process.proc.pid})"
    ]
    taken = [*dev.argv[: dev.argv.index("--state-dir") + 1], str(dev.state.parent / "other"), *dev.argv[-6:]]
    clash = subprocess.run(taken, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert clash.returncode == 1
    assert clash.stdout.splitlines() == [
        f"dev       | port {dev.api_port} (api) is not free on 127.0.0.1: another process listens there; "
        "pass --api-port",
        f"dev       | port {dev.smtp_port} (smtp) is not free on 127.0.0.1: another process listens there; "
        "pass --smtp-port",
        f"dev       | port {dev.collector_port} (collector) is not free on 127.0.0.1: another process listens there; "
        "pass --collector-port",
        "dev       | nothing was started",
    ]

    # A request just before the stop: its API spans are flushed on the way out.
    last = httpx.post(
        f"http://127.0.0.1:{dev.api_port}/users",
        json={"user_id": "dev-u1", "email": "alan@example.com", "name": "Alan"},
        headers=auth,
        timeout=30,
    )
    assert last.status_code == 202, last.text
    assert dev.process.terminate(timeout=180) == 0, dev.process.describe()

    output = dev.lines()
    stopping = [
        line.split("| stopping ", 1)[1]
        for line in output
        if line.startswith("dev       | stopping ") and ":" not in line
    ]
    assert stopping == STOP_ORDER
    assert output[-1] == "dev       | all stopped"
    assert not [line for line in output if "spans lost" in line or "export failing" in line]
    assert {pid for pid, start in pids.items() if still_running(pid, start)} == set()

    with TraceStore(dev.store_path) as store:
        flushed = store.spans(last.json()["trace_id"])
        stored = store.span_count()
    assert {"POST /users", "send users"} <= {s.name for s in flushed}
    ids = {s.span_id for s in flushed}
    assert all(s.parent_id in ids for s in flushed if s.parent_id), "a span whose parent never arrived"
    collector_line = next(line for line in output if line.startswith("collector | stored "))
    assert collector_line.endswith(f"; {stored} spans in the store")
