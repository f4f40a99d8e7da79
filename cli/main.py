"""``tracedq``: the operator command line (demo, trace viewer, dead-letter tools).

Exit codes scripts can rely on: 0 done, 1 the operation failed (a broker or backend error, a message that
could not be replayed), 2 bad usage (click's own).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cli.dlq import dlq

__all__ = ["main", "tracedq"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def tracedq() -> None:
    """Follow Dramatiq messages end to end: run the demo, draw traces, inspect and replay dead letters."""


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
@click.option("-v", "--verbose", is_flag=True, help="Show pika's and the SMTP sink's INFO lines too.")
def demo(spans_file: Path, broker: str, verbose: bool) -> None:
    """Run the real flows (no services needed by default) and draw each trace.

    With --broker amqp://..., the demo's messages go through that RabbitMQ's real queues; the dead letters
    its flows produce are removed afterwards (by trace id, nothing else is touched).
    """
    if broker.startswith("amqp"):
        from cli.demo_rabbitmq import run_rabbitmq_demo

        sys.exit(run_rabbitmq_demo(broker, spans_file, verbose=verbose))
    from cli.demo import run_demo

    sys.exit(run_demo(spans_file))


@tracedq.group(name="trace")
def trace_group() -> None:
    """Draw traces from the local spans file."""


@trace_group.command(name="list")
@SPANS_FILE
def trace_list(spans_file: Path) -> None:
    """Recent traces with their root span, span count and outcome."""
    from cli.spanfile import read_spans
    from cli.waterfall import group_by_trace

    if not spans_file.exists():
        raise click.ClickException(f"{spans_file} does not exist: run `tracedq demo` first")
    for trace_id, spans in group_by_trace(read_spans(spans_file)).items():
        roots = [s for s in spans if s.parent_id is None] or spans
        errors = sum(s.error is not None for s in spans)
        outcome = "error" if errors else "ok"
        click.echo(f"{trace_id}  {len(spans):3d} spans  {outcome:<5}  {roots[0].name}")


@trace_group.command(name="show")
@click.argument("trace_id")
@SPANS_FILE
@click.option(
    "--jaeger",
    envvar="JAEGER_URL",
    metavar="URL",
    help="Read the trace from Jaeger's query API at URL (env JAEGER_URL) instead of the spans file.",
)
def trace_show(trace_id: str, spans_file: Path, jaeger: str | None) -> None:
    """Draw TRACE_ID (32 hex digits, or a unique prefix of one in the spans file) as a waterfall."""
    from cli.spanfile import read_spans
    from cli.waterfall import draw_trace, group_by_trace

    if jaeger:
        from cli.jaeger import JaegerError, fetch_trace

        try:
            click.echo("\n".join(draw_trace(fetch_trace(jaeger, trace_id))))
        except JaegerError as exc:
            raise click.ClickException(str(exc)) from exc
        return
    if not spans_file.exists():
        raise click.ClickException(f"{spans_file} does not exist: run `tracedq demo` first")
    traces = group_by_trace(read_spans(spans_file))
    matches = [tid for tid in traces if tid.startswith(trace_id.lower())]
    if len(matches) != 1:
        raise click.ClickException(f"{len(matches)} traces match {trace_id!r} in {spans_file}")
    click.echo("\n".join(draw_trace(traces[matches[0]])))


tracedq.add_command(dlq)


def main() -> None:
    """Console-script entry point."""
    tracedq()


if __name__ == "__main__":
    main()
