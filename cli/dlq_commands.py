"""``tracedq dlq``: inspect and replay RabbitMQ dead-letter queues (``<queue>.XQ``).

The logic lives in :mod:`operations`, the rich output in :mod:`cli.dlq_views`; this module is the click commands.
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
from rich.console import Console

from cli import dlq_views
from operations import dead_letter_queue
from operations import replay as replaying
from operations.dead_letter_queue import base_queue

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
    except dead_letter_queue.QueueNotFound as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except pika.exceptions.AMQPError as exc:
        click.echo(f"error: RabbitMQ: {exc!r}", err=True)
        sys.exit(1)


@click.group()
def dlq() -> None:
    """Inspect, replay and purge dead letters (``<QUEUE>.XQ``) on RabbitMQ."""
    # pika logs every connect and close at INFO; these commands report broker errors themselves.
    logging.getLogger("pika").setLevel(logging.CRITICAL)


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
        letters = dead_letter_queue.read(url, queue, limit)
    if as_json:
        for letter in letters:
            click.echo(json.dumps(dlq_views.letter_json(letter, jaeger_url), ensure_ascii=False))
        return
    console = _console()
    xq = f"{base_queue(queue)}.XQ"
    if not letters:
        console.print(f"{xq} is empty")
        return
    console.print(dlq_views.letters_table(letters, xq, jaeger_url))
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
        matches = dead_letter_queue.find_prefix(url, queue, message_id, limit)
    if not matches:
        click.echo(f"error: no message {message_id!r} among the first {limit} of {base_queue(queue)}.XQ", err=True)
        sys.exit(1)
    if len(matches) > 1:
        candidates = "\n".join(f"  {letter.message_id}  {letter.actor_name or '?'}" for letter in matches)
        raise click.UsageError(f"{message_id!r} matches {len(matches)} messages; give more of the id:\n{candidates}")
    (letter,) = matches
    assert letter.message is not None
    if as_json:
        click.echo(
            json.dumps(
                {**dlq_views.letter_json(letter, jaeger_url), "message": letter.message, "headers": letter.headers},
                ensure_ascii=False,
                default=str,
            )
        )
        return
    dlq_views.print_letter(_console(), letter, jaeger_url)


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
            report = replaying.replay(
                url,
                queue,
                replaying.selector(ids, actor, everything),
                limit=limit,
                dry_run=dry_run,
                # A dry run changes nothing and takes no time: no bar (it was labelled "replaying").
                progress=replaying.no_progress if dry_run else dlq_views.progress_factory(console),
            )
    except Exception as exc:
        click.echo(f"error: replay interrupted: {exc!r}; unreplayed messages stay in the XQ", err=True)
        sys.exit(1)
    finally:
        flush = getattr(provider or trace.get_tracer_provider(), "force_flush", None)
        if flush is not None:
            flush()
    missing = sorted(set(ids) - {r.letter.message_id for r in report.results})
    dlq_views.print_replay(console, report, missing, f"{base_queue(queue)}.XQ", dry_run=dry_run)
    if report.failed or missing:
        sys.exit(1)


@dlq.command()
@click.argument("queue")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_broker_option
def purge(queue: str, yes: bool, broker_url: str | None) -> None:
    """Delete every dead letter of QUEUE for good."""
    url = _resolve_broker(broker_url)
    xq = f"{base_queue(queue)}.XQ"
    if not yes:
        with _errors():
            depth = dead_letter_queue.depth(url, queue)
        if depth == 0:
            click.echo(f"{xq} is empty")
            return
        click.confirm(f"Delete {depth} message(s) in {xq} for good?", abort=True)
    with _errors():
        count = dead_letter_queue.purge(url, queue)
    click.echo(f"purged {count} message(s) from {xq}")
