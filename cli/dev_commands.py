"""``tracedq dev`` (run the whole service natively) and ``tracedq dev emails`` (what its SMTP sink received)."""

from __future__ import annotations

import sys
from datetime import datetime
from itertools import islice
from pathlib import Path

import click

from cli.tracestore.defaults import DEFAULT_MAX_SPANS

__all__ = ["DEFAULT_BROKER_URL", "dev"]

# actors.settings.DEFAULT_BROKER_URL, spelt again: importing ``actors`` builds the broker and sets up the SDK,
# which the CLI must not do to print its help (tests/unit/test_dev_cli.py checks the two agree).
DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"

_STATE_DIR = click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path(".tracedq"),
    show_default=True,
    help="Where the trace store (traces.db), the mailbox (mail/) and the worker heartbeats live.",
)


@click.group(name="dev", invoke_without_command=True)
@click.option(
    "--broker", envvar="BROKER_URL", default=DEFAULT_BROKER_URL, show_default=True, help="RabbitMQ (env BROKER_URL)."
)
@click.option(
    "--database-url",
    envvar="DATABASE_URL",
    default="sqlite:///tracedq.db",
    show_default=True,
    help="SQLAlchemy URL (env DATABASE_URL); its schema is created on start.",
)
@_STATE_DIR
@click.option("--api-port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--smtp-port", type=click.IntRange(1, 65535), default=1025, show_default=True)
@click.option("--collector-port", type=click.IntRange(1, 65535), default=4318, show_default=True, help="OTLP/HTTP.")
@click.option("-p", "--processes", type=click.IntRange(1, 16), default=1, show_default=True, help="Worker processes.")
@click.option("-t", "--threads", type=click.IntRange(1, 64), default=4, show_default=True, help="Threads per process.")
@click.option("--no-scheduler", is_flag=True, help="Do not run the periodiq scheduler.")
@click.option(
    "--max-spans",
    type=click.IntRange(min=1000),
    default=DEFAULT_MAX_SPANS,
    show_default=True,
    help="The trace store's bound: beyond it the oldest traces are deleted.",
)
@click.pass_context
def dev(
    ctx: click.Context,
    broker: str,
    database_url: str,
    state_dir: Path,
    api_port: int,
    smtp_port: int,
    collector_port: int,
    processes: int,
    threads: int,
    no_scheduler: bool,
    max_spans: int,
) -> None:
    """Run the API, a worker, the scheduler, an SMTP sink and a trace collector, until Ctrl-C.

    Their output is merged, one prefix per process. Every span and log record goes to the local trace
    store: follow a request with `tracedq trace list`, `show` and `tail`. Ctrl-C (or SIGTERM) stops the
    API, the scheduler, the worker (which flushes its spans), the SMTP sink, then the collector.
    """
    if ctx.invoked_subcommand is not None:
        return
    from cli.dev import DevConfig
    from cli.dev.run import run_dev

    config = DevConfig(
        broker_url=broker,
        database_url=database_url,
        state_dir=state_dir,
        api_port=api_port,
        smtp_port=smtp_port,
        collector_port=collector_port,
        processes=processes,
        threads=threads,
        max_spans=max_spans,
        scheduler=not no_scheduler,
        console_logs=sys.stdout.isatty(),
    )
    sys.exit(run_dev(config))


@dev.command(name="emails")
@_STATE_DIR
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--body", is_flag=True, help="Print each message's text too.")
def dev_emails(state_dir: Path, limit: int, body: bool) -> None:
    """The messages `tracedq dev`'s SMTP sink received, newest first: time, recipient, subject, file."""
    from cli.dev.mailbox import read_mailbox

    mails = list(islice(read_mailbox(state_dir / "mail"), limit))
    if not mails:
        click.echo(f"no mail in {state_dir / 'mail'} yet", err=True)
    for mail in mails:
        received = datetime.fromtimestamp(mail.received_ns / 1e9).strftime("%m-%d %H:%M:%S")
        click.echo(f"{received}  to {mail.to}  {mail.subject}  ({mail.path})")
        if body:
            click.echo("    " + mail.body.replace("\n", "\n    ") + "\n")
