"""``tracedq``: the operator command line (demo, trace viewer, dead-letter tools).

Exit codes scripts can rely on: 0 done, 1 the operation failed (a broker or backend error, a message that
could not be replayed), 2 bad usage (click's own).
"""

from __future__ import annotations

import sys

import click

from cli.dlq import dlq

__all__ = ["main", "tracedq"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def tracedq() -> None:
    """Follow Dramatiq messages end to end: run the demo, draw traces, inspect and replay dead letters."""


@tracedq.command()
def demo() -> None:
    """Run the demo flows on the in-process broker and draw each trace in the terminal."""
    from cli.demo import main as run_demo

    sys.exit(run_demo())


tracedq.add_command(dlq)


def main() -> None:
    """Console-script entry point."""
    tracedq()
