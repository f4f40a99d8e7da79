"""``tracedq``: the operator command line (demo, the dev loop, trace viewer, dead-letter tools).

Exit codes scripts can rely on: 0 done, 1 the operation failed (a broker or backend error, a message that
could not be replayed), 2 bad usage (click's own).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cli.dev_commands import dev
from cli.dlq_commands import dlq
from cli.trace_commands import trace_group

__all__ = ["main", "tracedq"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def tracedq() -> None:
    """Follow Dramatiq messages end to end: run the demo or the whole service, draw traces, replay dead letters."""


SPANS_FILE = click.option(
    "--spans-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path(".tracedq") / "spans.jsonl",
    show_default=True,
    help="OTLP/JSON lines file of spans.",
)


@tracedq.command()
@SPANS_FILE
@click.option(
    "--broker",
    metavar="URL",
    default="memory://",
    show_default=True,
    help="memory:// runs in-process; amqp://... runs the flows through RabbitMQ and a real worker process.",
)
@click.option(
    "--store",
    "store_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The local trace store the spans are also recorded in.  [default: traces.db beside the spans file]",
)
@click.option("-v", "--verbose", is_flag=True, help="Show pika's and the SMTP sink's INFO lines too.")
def demo(spans_file: Path, broker: str, store_path: Path | None, verbose: bool) -> None:
    """Run the real flows (no services needed by default) and draw each trace.

    With --broker amqp://..., the demo's messages go through that RabbitMQ's real queues; the dead letters
    its flows produce are removed afterwards (by trace id, nothing else is touched).
    """
    from cli.tracestore.store import record_spans_file

    store_path = store_path or spans_file.with_name("traces.db")

    written_before = spans_file.stat().st_size if spans_file.exists() else 0
    if broker.startswith("amqp"):
        from cli.demo_rabbitmq import run_rabbitmq_demo

        code = run_rabbitmq_demo(broker, spans_file, verbose=verbose)
    else:
        from cli.demo import run_demo

        code = run_demo(spans_file)
    # The same spans in the local store, so `tracedq trace list` shows them beside `tracedq dev`'s.
    record_spans_file(store_path, spans_file, offset=written_before)
    sys.exit(code)


tracedq.add_command(dlq)
tracedq.add_command(trace_group)
tracedq.add_command(dev)


def main() -> None:
    """Console-script entry point."""
    tracedq()


if __name__ == "__main__":
    main()
