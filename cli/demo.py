"""``make demo``: real messages through the traced path on the in-process broker, drawn in the terminal.

No services needed: Dramatiq's StubBroker stands in for RabbitMQ, spans are kept in memory. Each flow's
trace is drawn as a waterfall, followed by the log lines that carry its trace id.
"""

from __future__ import annotations

import io
import json
import os
import sys

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cli.waterfall import draw_trace, group_by_trace

__all__ = ["main"]


def main() -> int:
    """Run the demo flows and print their traces. Returns the exit code."""
    os.environ["BROKER_URL"] = "memory://"
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    logs = io.StringIO()
    os.environ.setdefault("LOG_FORMAT", "json")

    import dramatiq
    from dramatiq.brokers.stub import StubBroker

    import actors
    from observability import configure_logging

    configure_logging(json=True, stream=logs)
    tracer = trace.get_tracer("demo")
    worker = dramatiq.Worker(actors.broker, worker_timeout=20, worker_threads=2)
    worker.start()
    try:
        with tracer.start_as_current_span("demo: greet Ada"):
            actors.greet.send("Ada")
        with tracer.start_as_current_span("demo: greet later"):
            actors.greet.send_with_options(args=("Grace",), delay=50)
        with tracer.start_as_current_span("demo: blank name, retried then dead-lettered"):
            actors.greet.send_with_options(args=("  ",), max_retries=1, min_backoff=10, max_backoff=20)
        assert isinstance(actors.broker, StubBroker)
        actors.broker.join("greetings", fail_fast=False)
        worker.join()
    finally:
        worker.stop()

    log_lines = [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]
    for trace_id, spans in group_by_trace(exporter.get_finished_spans()).items():
        print("\n".join(draw_trace(spans)))
        hex_id = f"{trace_id:032x}"
        for line in log_lines:
            if line.get("trace_id") == hex_id:
                print(f"    log {line['level']:<7} {line['event'][:70]}")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
