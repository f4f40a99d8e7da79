"""``tracedq-worker``: ``dramatiq --skip-logging actors`` with any extra dramatiq options passed through."""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> int:
    """Run Dramatiq's CLI on our actors; our own logging setup replaces Dramatiq's."""
    from dramatiq.cli import main as dramatiq_main

    sys.argv = ["dramatiq", "--skip-logging", "actors", *sys.argv[1:]]
    return int(dramatiq_main() or 0)  # type: ignore[no-untyped-call]  # dramatiq.cli is untyped
