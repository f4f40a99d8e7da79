"""``tracedq dlq``: inspect and replay RabbitMQ dead-letter queues (``<queue>.XQ``).

The logic lives in :mod:`operations.dead_letters`; this module is the click commands and the rich output.
See docs/dead-letters.md.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click
import pika.exceptions
from opentelemetry import trace
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from operations import dead_letters as dl

if TYPE_CHECKING:
    from actors.settings import Settings

__all__ = ["dlq"]


def _settings() -> Settings:
    # Imported here, not at module level: importing ``actors`` builds the broker and configures logging
    # and tracing for the process, which ``tracedq demo`` must do itself, its own way, first.
    from actors.settings import load_settings

    return load_settings()


def _console() -> Console:
    return Console(file=sys.stdout, highlight=False)


def _broker_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--broker",
        "broker_url",
        default=None,
        metavar="URL",
        help="RabbitMQ URL (default: BROKER_URL from the settings).",
    )(command)


def _resolve_broker(broker_url: str | None) -> str:
    url = broker_url or _settings().broker_url
    if not url.startswith(("amqp://", "amqps://")):
        raise click.UsageError(f"dead-letter tools need a RabbitMQ broker (amqp://...), not {url!r}")
    return url


@contextmanager
def _errors() -> Iterator[None]:
    """Broker trouble is exit 1 with one readable line, not a traceback."""
    try:
        yield
    except dl.QueueNotFound as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except pika.exceptions.AMQPError as exc:
        click.echo(f"error: RabbitMQ: {exc!r}", err=True)
        sys.exit(1)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    value = int(seconds)
    if value >= 86400:
        return f"{value // 86400}d {value % 86400 // 3600}h"
    if value >= 3600:
        return f"{value // 3600}h {value % 3600 // 60}m"
    if value >= 60:
        return f"{value // 60}m {value % 60}s"
    return f"{value}s"


@click.group()
def dlq() -> None:
    """Inspect, replay and purge dead letters (``<QUEUE>.XQ``) on RabbitMQ."""
    # pika logs every connect and close at INFO; these commands report broker errors themselves.
    logging.getLogger("pika").setLevel(logging.CRITICAL)


#: Characters of a message or trace id shown in the table (more when two listed ids share them).
SHORT_ID = 8


def _short_ids(ids: list[str]) -> dict[str, str]:
    """Each id's shortest prefix of at least ``SHORT_ID`` characters that no other id in ``ids`` starts with."""
    unique = set(ids)
    short = {}
    for full in unique:
        length = SHORT_ID
        while length < len(full) and any(o != full and o.startswith(full[:length]) for o in unique):
            length += 1
        short[full] = full[:length]
    return short


def _letter_json(letter: dl.DeadLetter, jaeger_url: str) -> dict[str, Any]:
    """One dead letter as ``--json`` prints it (the keys are documented in docs/dead-letters.md)."""
    return {
        "message_id": letter.message_id,
        "actor": letter.actor_name,
        "queue": letter.queue_name,
        "retries": letter.retries,
        "reason": letter.reason,
        "age_seconds": None if letter.age_seconds is None else round(letter.age_seconds, 3),
        "message_timestamp": (letter.message or {}).get("message_timestamp"),
        "trace_id": letter.trace_id,
        "trace_url": None if letter.trace_id is None else dl.jaeger_link(jaeger_url, letter.trace_id),
    }


JSON_OPTION = click.option(
    "--json", "as_json", is_flag=True, help="JSON instead of a table (see docs/dead-letters.md)."
)


@dlq.command("list")
@click.argument("queue")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1), help="Read at most this many.")
@JSON_OPTION
@_broker_option
def list_(queue: str, limit: int, as_json: bool, broker_url: str | None) -> None:
    """List the dead letters of QUEUE (read-only: every message stays in the XQ).

    The table shows the first 8 characters of each message and trace id (``dlq show`` and ``trace show``
    take such a prefix); ``--json`` prints one JSON object per message, with the full ids.
    """
    url = _resolve_broker(broker_url)
    jaeger_url = _settings().jaeger_url
    with _errors():
        letters = dl.read(url, queue, limit)
    if as_json:
        for letter in letters:
            click.echo(json.dumps(_letter_json(letter, jaeger_url), ensure_ascii=False))
        return
    console = _console()
    xq = f"{dl.base_queue(queue)}.XQ"
    if not letters:
        console.print(f"{xq} is empty")
        return
    # Narrow fixed columns and the reason wrapping in what is left: readable in 80 columns and when piped
    # (rich then assumes 80), where full 36- and 32-character ids used to squeeze every column to "…".
    short = _short_ids([letter.message_id for letter in letters if letter.message_id is not None])
    traces = _short_ids([letter.trace_id for letter in letters if letter.trace_id is not None])
    table = Table(title=f"{xq}: {len(letters)} message(s)", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("id", no_wrap=True)
    table.add_column("actor", overflow="fold")
    table.add_column("retries", justify="right", no_wrap=True)
    table.add_column("age", justify="right", no_wrap=True)
    table.add_column("trace", no_wrap=True)
    table.add_column("reason", overflow="fold", ratio=1)
    for letter in letters:
        trace_cell = "-"
        if letter.trace_id is not None:
            link = dl.jaeger_link(jaeger_url, letter.trace_id)
            trace_cell = f"[link={link}]{traces[letter.trace_id]}[/link]"
        table.add_row(
            escape(short.get(letter.message_id or "", "?")),
            escape(letter.actor_name or "?"),
            "?" if letter.retries is None else str(letter.retries),
            _age(letter.age_seconds),
            trace_cell,
            escape(letter.reason),
        )
    console.print(table)
    if len(letters) == limit:
        console.print(f"(showing the first {limit}; use --limit to see more)")


@dlq.command()
@click.argument("queue")
@click.argument("message_id")
@click.option("--limit", default=10000, show_default=True, type=click.IntRange(min=1), help="Search this many.")
@JSON_OPTION
@_broker_option
def show(queue: str, message_id: str, limit: int, as_json: bool, broker_url: str | None) -> None:
    """Print one dead letter of QUEUE in full: the message as JSON, its traceback and trace link.

    MESSAGE_ID may be a unique prefix of the id (the table shows 8 characters).
    """
    if not message_id.strip():
        raise click.BadParameter("give a message id or a prefix of one", param_hint="MESSAGE_ID")
    url = _resolve_broker(broker_url)
    jaeger_url = _settings().jaeger_url
    with _errors():
        matches = dl.find_prefix(url, queue, message_id, limit)
    if not matches:
        click.echo(f"error: no message {message_id!r} among the first {limit} of {dl.base_queue(queue)}.XQ", err=True)
        sys.exit(1)
    if len(matches) > 1:
        candidates = "\n".join(f"  {letter.message_id}  {letter.actor_name or '?'}" for letter in matches)
        raise click.UsageError(f"{message_id!r} matches {len(matches)} messages; give more of the id:\n{candidates}")
    (letter,) = matches
    assert letter.message is not None
    if as_json:
        click.echo(
            json.dumps(
                {**_letter_json(letter, jaeger_url), "message": letter.message, "headers": letter.headers},
                ensure_ascii=False,
                default=str,
            )
        )
        return
    console = _console()
    message = json.loads(json.dumps(letter.message))
    traceback_text = (
        message.get("options", {}).pop("traceback", None) if isinstance(message.get("options"), dict) else None
    )
    console.print(f"[bold]{escape(letter.actor_name or '?')}[/bold] {escape(letter.message_id or '?')}")
    console.print(f"reason: {escape(letter.reason)}", soft_wrap=True)
    console.print(f"age:    {_age(letter.age_seconds)}")
    if letter.trace_id is not None:
        console.print(f"trace:  {letter.trace_id}  {dl.jaeger_link(jaeger_url, letter.trace_id)}", soft_wrap=True)
    console.print_json(json.dumps(message, sort_keys=True, default=str))
    if isinstance(traceback_text, str):
        console.print("[bold]traceback[/bold]")
        console.print(escape(traceback_text.rstrip()), soft_wrap=True)
    if letter.headers:
        console.print("[bold]AMQP headers[/bold]")
        console.print(escape(json.dumps(letter.headers, indent=2, default=str)), soft_wrap=True)


def _progress_factory(console: Console) -> Callable[[int], Any]:
    @contextmanager
    def progress(total: int) -> Iterator[Callable[[], None]]:
        if total <= 1:
            yield lambda: None
            return
        with Progress(
            TextColumn("replaying"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as bar:
            task = bar.add_task("replay", total=total)
            yield lambda: bar.advance(task)

    return progress


@dlq.command()
@click.argument("queue")
@click.option("--id", "ids", multiple=True, metavar="MESSAGE_ID", help="Replay this message (repeatable).")
@click.option("--actor", default=None, help="Replay the messages of this actor.")
@click.option("--all", "everything", is_flag=True, help="Replay every message read.")
@click.option("--dry-run", is_flag=True, help="Show what would be replayed; change nothing.")
@click.option("--limit", default=None, type=click.IntRange(min=1), help="Read at most this many from the XQ.")
@_broker_option
def replay(
    queue: str,
    ids: tuple[str, ...],
    actor: str | None,
    everything: bool,
    dry_run: bool,
    limit: int | None,
    broker_url: str | None,
) -> None:
    """Send dead letters of QUEUE back to their queue with retries reset and a new, linked trace.

    Each copy leaves the XQ only after RabbitMQ confirmed the republished one.
    """
    if not (ids or actor or everything):
        raise click.UsageError("choose messages with --id, --actor or --all")
    url = _resolve_broker(broker_url)
    from observability.sdk import configure_tracing

    # A one-shot command: an export process would cost its 1-2 s start for spans the exit flush sends anyway.
    provider = configure_tracing(default_service_name="tracedq-cli", span_export="inline")
    console = _console()
    try:
        with _errors():
            report = dl.replay(
                url,
                queue,
                dl.selector(ids, actor, everything),
                limit=limit,
                dry_run=dry_run,
                # A dry run changes nothing and takes no time: no bar (it was labelled "replaying").
                progress=dl.no_progress if dry_run else _progress_factory(console),
            )
    except Exception as exc:
        click.echo(f"error: replay interrupted: {exc!r}; unreplayed messages stay in the XQ", err=True)
        sys.exit(1)
    finally:
        flush = getattr(provider or trace.get_tracer_provider(), "force_flush", None)
        if flush is not None:
            flush()
    for result in report.results:
        style = {"replayed": "green", "would replay": "cyan", "failed": "red", "skipped": "yellow"}[result.outcome]
        line = f"[{style}]{result.outcome}[/{style}] {escape(result.letter.message_id or '?')}"
        if result.detail:
            line += f" -> {escape(result.detail)}"
        if result.new_trace_id:
            line += f" (trace {result.new_trace_id})"
        console.print(line, soft_wrap=True)
    missing = sorted(set(ids) - {r.letter.message_id for r in report.results})
    for message_id in missing:
        console.print(f"[red]not found[/red] {escape(message_id)}")
    verb = "would replay" if dry_run else "replayed"
    done = report.count(dl.ReplayOutcome.WOULD_REPLAY if dry_run else dl.ReplayOutcome.REPLAYED)
    console.print(
        f"{verb} {done} of {report.fetched} read from {dl.base_queue(queue)}.XQ; "
        f"{report.count(dl.ReplayOutcome.FAILED)} failed, {report.count(dl.ReplayOutcome.SKIPPED)} skipped"
    )
    if report.failed or missing:
        sys.exit(1)


@dlq.command()
@click.argument("queue")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_broker_option
def purge(queue: str, yes: bool, broker_url: str | None) -> None:
    """Delete every dead letter of QUEUE for good."""
    url = _resolve_broker(broker_url)
    xq = f"{dl.base_queue(queue)}.XQ"
    if not yes:
        with _errors():
            depth = dl.depth(url, queue)
        if depth == 0:
            click.echo(f"{xq} is empty")
            return
        click.confirm(f"Delete {depth} message(s) in {xq} for good?", abort=True)
    with _errors():
        count = dl.purge(url, queue)
    click.echo(f"purged {count} message(s) from {xq}")
