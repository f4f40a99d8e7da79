"""``tracedq demo --broker amqp://...``: the same flows through real RabbitMQ and a real worker process.

The CLI starts what the worker needs on loopback (an OTLP receiver for its spans, an SMTP sink whose first
answer to ``flaky@example.com`` is a 421, a SQLite file with demo stock), runs ``dramatiq actors`` as a
subprocess, sends the flows, waits until they are done, stops the worker with SIGTERM (it flushes its
spans) and draws each trace from both processes' spans.
"""

from __future__ import annotations

import json
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
from opentelemetry.trace import StatusCode

from cli.demo import draw, send_flows
from cli.otlp_receiver import OtlpReceiver, ReceivedSpan
from cli.spanfile import SpanView, from_readable, write_spans
from observability import semconv

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


def _view(span: ReceivedSpan) -> SpanView:
    return SpanView(
        trace_id=span.trace_id,
        span_id=span.span_id,
        parent_id=span.parent_span_id or None,
        name=span.name,
        service=str(span.resource.get("service.name", "")),
        start_ns=span.start_ns,
        end_ns=span.end_ns,
        error=(span.status_message or "error") if span.status_code is StatusCode.ERROR else None,
        attributes=span.attributes,
    )


def run_rabbitmq_demo(broker_url: str, spans_file: Path, *, timeout: float = 90.0) -> int:
    """Run the flows through ``broker_url`` with a real worker process. Returns the exit code."""
    from aiosmtpd.controller import Controller

    workdir = Path(tempfile.mkdtemp(prefix="tracedq-demo-"))
    database_url = f"sqlite:///{workdir / 'demo.db'}"
    os.environ["BROKER_URL"] = broker_url
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "tracedq-demo"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    import actors
    from actors.db import DEMO_STOCK
    from services.model import Product
    from services.unit_of_work import create_schema, make_engine, make_session_factory

    engine = make_engine(database_url)
    create_schema(engine)
    with make_session_factory(engine)() as session:
        session.add_all(Product(sku=sku, name=name, stock=stock) for sku, (name, stock) in DEMO_STOCK.items())
        session.commit()

    sink = _SmtpSink()
    smtp_port = _free_port()
    smtp = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    receiver = OtlpReceiver().start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LOG_", "HEALTH_"))}
    env.update(
        BROKER_URL=broker_url,
        DATABASE_URL=database_url,
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(smtp_port),
        HEALTH_PORT="0",
        LOG_FORMAT="json",
        OTEL_SERVICE_NAME="tracedq-worker",
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    log_path = workdir / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "--skip-logging", "actors", "-p", "1", "-t", "4"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    try:
        trace_ids = set(send_flows(actors.broker, trace.get_tracer("demo"), run=f"-{uuid.uuid4().hex[:6]}"))

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
            os.killpg(worker.pid, signal.SIGKILL)
        smtp.stop()
    time.sleep(0.2)  # the last export request in flight
    receiver.stop()

    local = exporter.get_finished_spans()
    write_spans(spans_file, local)
    views = [from_readable(s) for s in local]
    views += [_view(s) for s in receiver.spans if s.trace_id in trace_ids]
    log_lines = []
    for line in log_path.read_text(errors="replace").splitlines():
        start = line.find("{")
        if start >= 0:
            try:
                log_lines.append(json.loads(line[start:]))
            except ValueError:
                continue
    draw(views, log_lines)
    print(f"{sink.delivered} emails delivered to the demo SMTP sink; worker log: {log_path}")
    if not finished:
        print("the flows did not finish in time; see the worker log", file=sys.stderr)
        return 1
    return 0
