"""``tracedq demo --broker amqp://...``: the same flows through real RabbitMQ and a real worker process.

The CLI starts what the worker needs on loopback (an OTLP receiver for its spans, an SMTP sink whose first
answer to ``flaky@example.com`` is a 421, a SQLite file with demo stock), runs ``dramatiq actors`` as a
subprocess, sends the flows, waits until they are done, stops the worker with SIGTERM (it flushes its
spans) and draws each trace from both processes' spans.

It leaves nothing behind, also when interrupted (Ctrl-C): once its worker has stopped, the messages its flows
left in RabbitMQ (the invalid payload in ``orders.XQ``; after an interruption, whatever was still queued) are
deleted by their trace id from the flows' queues (and their .DQ and .XQ) that nothing else consumes, every
other message is put back, and its temporary folder (database, worker log, heartbeats) is deleted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cli.demo import draw, send_flows
from cli.spanfile import from_readable, write_spans
from cli.tracestore.records import span_view
from observability import semconv
from operations.trace_removal import remove_messages
from otlp_receiver import OtlpReceiver, ReceivedSpan

__all__ = ["run_rabbitmq_demo"]


class _SmtpSink:
    """aiosmtpd handler: keeps the mail, refuses the first message to flaky@example.com with a 421."""

    def __init__(self) -> None:
        self.delivered = 0
        self._refused = False

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        if "flaky@example.com" in envelope.rcpt_tos and not self._refused:
            self._refused = True
            return "421 try again later (demo)"
        self.delivered += 1
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _quiet_libraries(verbose: bool) -> None:
    """aiosmtpd logs each SMTP exchange, pika each connection, at INFO: shown only with ``-v``."""
    for name in ("mail.log", "pika"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)


def run_rabbitmq_demo(broker_url: str, spans_file: Path, *, timeout: float = 90.0, verbose: bool = False) -> int:
    """Run the flows through ``broker_url`` with a real worker process. Returns the exit code."""
    with tempfile.TemporaryDirectory(prefix="tracedq-demo-") as workdir:
        return _run(broker_url, spans_file, Path(workdir), timeout=timeout, verbose=verbose)


def _run(broker_url: str, spans_file: Path, workdir: Path, *, timeout: float, verbose: bool) -> int:
    from aiosmtpd.controller import Controller

    database_url = f"sqlite:///{workdir / 'demo.db'}"
    os.environ["BROKER_URL"] = broker_url
    os.environ["TRACE_CAPTURE_ARGS"] = "true"  # as for its worker below: made-up data, texts shown
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "tracedq-demo"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    import actors
    from actors.db import DEMO_STOCK
    from services.model import Product
    from services.unit_of_work import create_schema, make_engine, make_session_factory

    _quiet_libraries(verbose)  # after ``import actors``, whose logging setup would reset nothing of this
    engine = make_engine(database_url)
    create_schema(engine)
    with make_session_factory(engine)() as session:
        session.add_all(Product(sku=sku, name=name, stock=stock) for sku, (name, stock) in DEMO_STOCK.items())
        session.commit()
    engine.dispose()

    sink = _SmtpSink()
    smtp_port = _free_port()
    smtp = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    receiver = OtlpReceiver().start()
    # TRACE_* too: the clean-up finds the demo's messages by trace id, which the parent policy keeps per flow.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LOG_", "HEALTH_", "TRACE_"))}
    env.update(
        BROKER_URL=broker_url,
        DATABASE_URL=database_url,
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(smtp_port),
        HEALTH_PORT="0",
        WORKER_HEARTBEAT_DIR=str(workdir / "heartbeats"),
        LOG_FORMAT="json",
        OTEL_SERVICE_NAME="tracedq-worker",
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_BSP_SCHEDULE_DELAY="100",
        TRACE_CAPTURE_ARGS="true",  # the demo's data is made up: show exception texts (hidden by default)
    )
    log_path = workdir / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "--skip-logging", "actors", "-p", "1", "-t", "4"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # Ctrl-C reaches the demo only; it stops the worker itself
        )
    sent: list[str] = []
    trace_ids: set[str] = set()
    finished = False
    leftovers: tuple[int, list[str]] = (0, [])
    try:
        trace_ids.update(send_flows(actors.broker, trace.get_tracer("demo"), f"-{uuid.uuid4().hex[:6]}", sent))

        def done(spans: list[ReceivedSpan]) -> bool:
            ours = [s for s in spans if s.trace_id in trace_ids]
            emails = [s for s in ours if s.name == "process email" and s.attributes.get(semconv.OUTCOME) == "success"]
            dead = [s for s in ours if s.attributes.get(semconv.OUTCOME) == "dead_lettered"]
            return len(emails) >= 4 and len(dead) >= 1

        finished = receiver.wait_for(done, timeout=timeout)
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    finally:
        if worker.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
        smtp.stop()
        actors.broker.close()
        if sent:  # the worker is gone: what is left of the demo's messages stays where it is now
            flow_actors = (actors.place_order, actors.reserve_inventory, actors.notify_customer, actors.register_user)
            bases = sorted({actor.queue_name for actor in (*flow_actors, actors.send_welcome_email)})
            queues = [name for base in bases for name in (base, f"{base}.DQ", f"{base}.XQ")]
            leftovers = remove_messages(broker_url, queues, set(sent))
    time.sleep(0.2)  # the last export request in flight
    receiver.stop()

    local = exporter.get_finished_spans()
    write_spans(spans_file, local)
    views = [from_readable(s) for s in local]
    views += [span_view(s) for s in receiver.spans if s.trace_id in trace_ids]
    log_text = log_path.read_text(errors="replace")
    log_lines = []
    for line in log_text.splitlines():
        start = line.find("{")
        if start >= 0:
            try:
                log_lines.append(json.loads(line[start:]))
            except ValueError:
                continue
    draw(views, log_lines)
    removed, consumed = leftovers
    delivered = f"{sink.delivered} emails delivered to the demo SMTP sink"
    print(f"{delivered}; {removed} message(s) the demo left in RabbitMQ deleted")
    if consumed and not finished:
        print(f"left alone, as other workers consume them: {', '.join(consumed)}", file=sys.stderr)
    if not finished:
        tail = "\n".join(log_text.splitlines()[-40:])
        print(f"the flows did not finish in time; the worker's last lines:\n{tail}", file=sys.stderr)
        return 1
    return 0
