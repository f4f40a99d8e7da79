"""``python -m worker_health.probe check``: the Kubernetes exec liveness probe over the workers' heartbeat files.

Exit 0 when at least ``--min-workers`` (default 1) heartbeats are fresh and **every** running heartbeat is
fresh and reports no problem, 1 otherwise (one hung or killed worker process, a queue RabbitMQ refuses to
declare, a stuck consumer or a message stuck past its time limit fails the probe; each ``FAIL`` line names
it). ``--dir`` and ``--max-age`` default to
``WORKER_HEARTBEAT_DIR`` and ``HEALTH_MAX_AGE``, the values the workers and their endpoint use, so the probe
needs no flags beside a worker configured by the environment.

The middleware that writes the files is :class:`worker_health.heartbeat.Heartbeat`; this module is never imported
by the ``actors`` package, so ``python -m`` runs it without runpy's "found in sys.modules" warning.
See ``docs/health.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from worker_health.heartbeat_files import (
    HEARTBEAT_DIR_VARIABLE_DEFAULT,
    MAX_AGE_VARIABLE_DEFAULT,
    assess,
    read_heartbeats,
)

__all__ = ["main"]


def _max_age_from(environ: Mapping[str, str]) -> float:
    # Read here, as the workers' settings read it: the probe runs every few seconds in the worker's container and
    # must not import the application.
    raw = environ.get("HEALTH_MAX_AGE", str(MAX_AGE_VARIABLE_DEFAULT))
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"HEALTH_MAX_AGE must be a number of seconds, not {raw!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m worker_health.probe check [--dir DIR] [--max-age S] [--min-workers N]``; 0 live, 1 not."""
    heartbeat_dir = os.environ.get("WORKER_HEARTBEAT_DIR", HEARTBEAT_DIR_VARIABLE_DEFAULT)
    max_age = _max_age_from(os.environ)
    parser = argparse.ArgumentParser(prog="python -m worker_health.probe", description="Worker heartbeat check.")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="exit 0 when the worker heartbeats are fresh (a liveness probe)")
    check.add_argument(
        "--dir",
        type=Path,
        default=Path(heartbeat_dir),
        help=f"heartbeat directory (WORKER_HEARTBEAT_DIR: {heartbeat_dir})",
    )
    check.add_argument(
        "--max-age",
        type=float,
        default=max_age,
        help=f"seconds a heartbeat may be old (HEALTH_MAX_AGE: {max_age:g})",
    )
    check.add_argument("--min-workers", type=int, default=1, help="fresh heartbeats required (1)")
    args = parser.parse_args(argv)

    verdict = assess(read_heartbeats(args.dir), max_age=args.max_age, min_workers=args.min_workers)
    for record in verdict.fresh:
        if not record.problems:  # a fresh heartbeat reporting problems is a FAIL line below
            print(f"worker {record.pid}: ok ({record.age:.1f}s)")
    for record in verdict.stopping:
        print(f"worker {record.pid}: stopping ({record.age:.1f}s)")
    for reason in verdict.reasons:
        print(f"FAIL {reason}", file=sys.stderr)
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
