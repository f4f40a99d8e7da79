"""What ``tracedq dlq`` prints: dead letters as a table, as JSON, in full, and a replay's outcome (rich).

The commands (:mod:`cli.dlq_commands`) read the broker through :mod:`operations`; this module only renders.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.jaeger import jaeger_link
from operations.dead_letter import DeadLetter
from operations.replay import ReplayOutcome, ReplayReport

__all__ = [
    "SHORT_ID",
    "age",
    "letter_json",
    "letters_table",
    "print_letter",
    "print_replay",
    "progress_factory",
    "short_ids",
]

#: Characters of a message or trace id shown in the table (more when two listed ids share them).
SHORT_ID = 8

_OUTCOME_STYLES = {
    ReplayOutcome.REPLAYED: "green",
    ReplayOutcome.WOULD_REPLAY: "cyan",
    ReplayOutcome.FAILED: "red",
    ReplayOutcome.SKIPPED: "yellow",
}


def age(seconds: float | None) -> str:
    """A dead letter's age the way the table shows it: ``3d 4h``, ``2h 5m``, ``4m 10s`` or ``7s``."""
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


def short_ids(ids: list[str]) -> dict[str, str]:
    """Each id's shortest prefix of at least ``SHORT_ID`` characters that no other id in ``ids`` starts with."""
    unique = set(ids)
    short = {}
    for full in unique:
        length = SHORT_ID
        while length < len(full) and any(o != full and o.startswith(full[:length]) for o in unique):
            length += 1
        short[full] = full[:length]
    return short


def letter_json(letter: DeadLetter, jaeger_url: str) -> dict[str, Any]:
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
        "trace_url": None if letter.trace_id is None else jaeger_link(jaeger_url, letter.trace_id),
    }


def letters_table(letters: Sequence[DeadLetter], xq: str, jaeger_url: str) -> Table:
    """The ``dlq list`` table: short ids, actor, retries, age, a linked trace id and the reason."""
    # Narrow fixed columns and the reason wrapping in what is left: readable in 80 columns and when piped
    # (rich then assumes 80), where full 36- and 32-character ids used to squeeze every column to "…".
    short = short_ids([letter.message_id for letter in letters if letter.message_id is not None])
    traces = short_ids([letter.trace_id for letter in letters if letter.trace_id is not None])
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
            link = jaeger_link(jaeger_url, letter.trace_id)
            trace_cell = f"[link={link}]{traces[letter.trace_id]}[/link]"
        table.add_row(
            escape(short.get(letter.message_id or "", "?")),
            escape(letter.actor_name or "?"),
            "?" if letter.retries is None else str(letter.retries),
            age(letter.age_seconds),
            trace_cell,
            escape(letter.reason),
        )
    return table


def print_letter(console: Console, letter: DeadLetter, jaeger_url: str) -> None:
    """``dlq show``: the reason, age and trace, the message as JSON, its traceback and AMQP headers."""
    message = json.loads(json.dumps(letter.message))
    traceback_text = (
        message.get("options", {}).pop("traceback", None) if isinstance(message.get("options"), dict) else None
    )
    console.print(f"[bold]{escape(letter.actor_name or '?')}[/bold] {escape(letter.message_id or '?')}")
    console.print(f"reason: {escape(letter.reason)}", soft_wrap=True)
    console.print(f"age:    {age(letter.age_seconds)}")
    if letter.trace_id is not None:
        console.print(f"trace:  {letter.trace_id}  {jaeger_link(jaeger_url, letter.trace_id)}", soft_wrap=True)
    console.print_json(json.dumps(message, sort_keys=True, default=str))
    if isinstance(traceback_text, str):
        console.print("[bold]traceback[/bold]")
        console.print(escape(traceback_text.rstrip()), soft_wrap=True)
    if letter.headers:
        console.print("[bold]AMQP headers[/bold]")
        console.print(escape(json.dumps(letter.headers, indent=2, default=str)), soft_wrap=True)


def progress_factory(console: Console) -> Callable[[int], Any]:
    """A ``progress`` for :func:`operations.replay.replay`: a bar on ``console`` when more than one is replayed."""

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


def print_replay(console: Console, report: ReplayReport, missing: Sequence[str], xq: str, *, dry_run: bool) -> None:
    """One line per selected message, one per requested id not found, then the totals."""
    for result in report.results:
        style = _OUTCOME_STYLES[result.outcome]
        line = f"[{style}]{result.outcome}[/{style}] {escape(result.letter.message_id or '?')}"
        if result.detail:
            line += f" -> {escape(result.detail)}"
        if result.new_trace_id:
            line += f" (trace {result.new_trace_id})"
        console.print(line, soft_wrap=True)
    for message_id in missing:
        console.print(f"[red]not found[/red] {escape(message_id)}")
    verb = "would replay" if dry_run else "replayed"
    done = report.count(ReplayOutcome.WOULD_REPLAY if dry_run else ReplayOutcome.REPLAYED)
    failed, skipped = report.count(ReplayOutcome.FAILED), report.count(ReplayOutcome.SKIPPED)
    console.print(f"{verb} {done} of {report.fetched} read from {xq}; {failed} failed, {skipped} skipped")
