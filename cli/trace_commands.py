"""``tracedq trace list | show | tail``: the traces of the local store (``tracedq dev``, ``tracedq demo``).

``show`` reads the local store first, Jaeger only when asked (``--jaeger``) or when the store has no match
and a Jaeger URL is configured (``--jaeger-url`` or ``JAEGER_URL``), and then says so: an exported
``JAEGER_URL`` never hides a local trace, and id prefixes keep working locally.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cli.tracestore.defaults import DEFAULT_STORE
from cli.tracestore.outcomes import OUTCOMES

if TYPE_CHECKING:
    from cli.tracestore.store import TraceStore

__all__ = ["TRACE_ID", "trace_group"]

DEFAULT_JAEGER_URL = "http://localhost:16686"
_HEX = frozenset("0123456789abcdef")


class TraceIdPrefix(click.ParamType):  # type: ignore[type-arg]  # generic in click's stubs only
    """A trace id (32 hex digits) or a prefix of one, lowercased; anything else is a usage error."""

    name = "TRACE_ID"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip().lower()
        if not text:
            self.fail("is empty: give a trace id (32 hex digits) or a prefix of one", param, ctx)
        if len(text) > 32 or not set(text) <= _HEX:
            self.fail(f"{value!r} is not a trace id: 32 hex digits, or a prefix of one", param, ctx)
        return text


TRACE_ID = TraceIdPrefix()

STORE = click.option(
    "--store",
    "store_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_STORE,
    show_default=True,
    help="The local trace store (`tracedq dev`'s collector and `tracedq demo` write it).",
)
SPANS_FILE = click.option(
    "--spans-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Read an OTLP/JSON lines file (the demo's --spans-file, a collector's file exporter) instead of the store.",
)


def _open(store_path: Path, spans_file: Path | None) -> TraceStore:
    from cli.tracestore.store import StoreError, TraceStore

    if spans_file is not None:
        from cli.spanfile import read_spans

        spans = read_spans(spans_file)
        store = TraceStore(":memory:", create=True, max_spans=max(len(spans), 10))
        store.add_spans(spans)
        return store
    try:
        return TraceStore(store_path)
    except StoreError as exc:
        raise click.ClickException(f"{exc}: start `tracedq dev` (or run `tracedq demo`) to record traces") from exc


@click.group(name="trace")
def trace_group() -> None:
    """List, draw and follow traces from the local store."""


@trace_group.command(name="list")
@STORE
@SPANS_FILE
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Traces to show.")
@click.option("--actor", metavar="NAME", help="Only traces in which actor NAME processed or sent a message.")
@click.option("--outcome", type=click.Choice(OUTCOMES), help="Only traces whose flow ended so.")
def trace_list(store_path: Path, spans_file: Path | None, limit: int, actor: str | None, outcome: str | None) -> None:
    """Traces newest first: start, duration, span count, the flow's outcome, root span.

    The outcome is what happened to the messages: each ends with its last attempt (a failed attempt that
    was retried successfully is success); the flow shows the worst of dead_lettered, lost, retrying,
    pending (sent, not processed yet), skipped, success.
    """
    from itertools import islice

    from cli.trace_views import HEADER, format_row, recent_summaries

    with _open(store_path, spans_file) as store:
        rows = [format_row(s) for s in islice(recent_summaries(store, actor=actor, outcome=outcome), limit)]
    click.echo(HEADER)
    for row in rows:
        click.echo(row)
    if not rows:
        click.echo("no traces" + (" match" if actor or outcome else " yet"), err=True)


@trace_group.command(name="show")
@click.argument("trace_id", type=TRACE_ID)
@STORE
@SPANS_FILE
@click.option("--jaeger", is_flag=True, help="Read the trace from Jaeger (needs the full id) instead of the store.")
@click.option(
    "--jaeger-url",
    envvar="JAEGER_URL",
    metavar="URL",
    help=f"Jaeger's query API (env JAEGER_URL; {DEFAULT_JAEGER_URL} with --jaeger). Also asked when the "
    "local store has no match.",
)
def trace_show(trace_id: str, store_path: Path, spans_file: Path | None, jaeger: bool, jaeger_url: str | None) -> None:
    """Draw TRACE_ID (32 hex digits, or a unique prefix) across processes, with its log lines."""
    if jaeger:
        if len(trace_id) != 32:
            raise click.BadParameter("Jaeger needs the whole 32-digit trace id, not a prefix", param_hint="TRACE_ID")
        _show_from_jaeger(jaeger_url or DEFAULT_JAEGER_URL, trace_id)
        return
    source = spans_file or store_path
    try:
        store = _open(store_path, spans_file)
    except click.ClickException:
        if jaeger_url is None:
            raise
        store = None
    if store is not None:
        with store:
            matches = store.matching(trace_id)
            if len(matches) == 1:
                from cli.trace_views import draw_with_logs

                click.echo("\n".join(draw_with_logs(store, matches[0])))
                return
        if len(matches) > 1:
            shown = ", ".join(matches[:10]) + (", ..." if len(matches) > 10 else "")
            raise click.BadParameter(
                f"{trace_id!r} is the start of several traces ({shown}): give more digits", param_hint="TRACE_ID"
            )
    if jaeger_url is None:
        raise click.ClickException(f"no trace {trace_id}... in {source} (ask Jaeger with --jaeger)")
    if len(trace_id) != 32:
        raise click.ClickException(
            f"no trace {trace_id}... in {source}, and Jaeger ({jaeger_url}) needs the whole 32-digit id"
        )
    click.echo(f"{trace_id} is not in {source}: reading it from Jaeger at {jaeger_url}", err=True)
    _show_from_jaeger(jaeger_url, trace_id)


def _show_from_jaeger(url: str, trace_id: str) -> None:
    from cli.jaeger import JaegerError, fetch_trace
    from cli.waterfall import draw_trace

    try:
        click.echo("\n".join(draw_trace(fetch_trace(url, trace_id))))
    except JaegerError as exc:
        raise click.ClickException(str(exc)) from exc


def _seconds(option: str, default: float, then: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A duration option in seconds (at least 0.1), its help ending with what happens ``then``."""
    return click.option(
        option,
        type=click.FloatRange(min=0.1),
        default=default,
        show_default=True,
        help=f"Seconds without a new span after which {then}",
    )


@trace_group.command(name="tail")
@STORE
@_seconds("--settle", 2.0, "a trace whose messages are all done is complete.")
@_seconds("--open-timeout", 60.0, "a trace still retrying or pending is printed anyway.")
def trace_tail(store_path: Path, settle: float, open_timeout: float) -> None:
    """Print each new trace once it is complete (Ctrl-C stops): its list row, its tree and its logs.

    Complete: every message of the flow is done (not pending or retrying) and no span arrived for --settle
    seconds. A trace that gets more spans later (a retry ran) is printed again.
    """
    from cli.trace_tail import tail
    from cli.tracestore.completion import TailTracker

    stop = threading.Event()
    with contextlib.suppress(ValueError):  # not the main thread (a test runner): Ctrl-C still stops us
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        tail(store_path, TailTracker(settle=settle, open_timeout=open_timeout), _echo_flushed, stop=stop)


def _echo_flushed(line: str) -> None:
    click.echo(line)
    sys.stdout.flush()
