"""Heartbeat files: one per worker process, their freshness, and the liveness verdict over a tree.

Split from ``worker_health.heartbeat`` (the middleware), ``worker_health.probe`` (the probe) and
``worker_health.health_server`` (the endpoint).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import structlog

__all__ = [
    "DEFAULT_HEARTBEAT_DIR",
    "HEARTBEAT_DIR_VARIABLE_DEFAULT",
    "MAX_AGE_VARIABLE_DEFAULT",
    "HeartbeatRecord",
    "MetricsSource",
    "State",
    "Verdict",
    "assess",
    "heartbeat_path",
    "metrics_path",
    "problem_lines",
    "read_heartbeats",
    "remove_orphans",
    "write_heartbeat",
]


_log = structlog.get_logger(__name__)

#: Where heartbeats go unless told otherwise: the container's own /tmp, which does not outlive it.
DEFAULT_HEARTBEAT_DIR = Path(tempfile.gettempdir()) / "tracedq-heartbeats"
#: ``WORKER_HEARTBEAT_DIR`` and ``HEALTH_MAX_AGE`` when unset: the workers' settings (actors/settings.py) and the
#: probe (worker_health/probe.py, which must not import the application) read both with these defaults.
HEARTBEAT_DIR_VARIABLE_DEFAULT = "/tmp/tracedq-heartbeats"
MAX_AGE_VARIABLE_DEFAULT = 30.0
_PREFIX = "worker-"
_SUFFIX = ".json"

State = Literal["running", "stopping"]

#: A source of Prometheus exposition text, called in the fork process on each ``GET /metrics``.
MetricsSource = Callable[[], bytes]


# -- heartbeat files ----------------------------------------------------------------------------------


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux ``/proc``), ``None`` when unknown or gone.

    A pid plus its start time names one process for good: pids are reused, start times are not.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (the command) may hold spaces and parentheses: split after its closing parenthesis.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None  # field 22, starttime


def _process_alive(pid: int, start: str | None) -> bool:
    """Whether the process ``pid`` that started at ``start`` still runs."""
    current = _process_start(pid)
    if current is not None:
        return start is None or current == start
    if Path("/proc").is_dir():
        return False
    try:  # no /proc (macOS): the pid alone
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class HeartbeatRecord:
    """One worker process's heartbeat file as read at ``now``."""

    path: Path
    pid: int
    main_pid: int
    main_start: str | None
    state: State
    age: float
    #: why the worker process is up but not working (``Heartbeat.problems``); empty when it works
    problems: tuple[str, ...] = ()

    def fresh(self, max_age: float) -> bool:
        """Running and rewritten within ``max_age`` seconds."""
        return self.state == "running" and self.age <= max_age


def metrics_path(directory: Path, pid: int) -> Path:
    """Where worker process ``pid`` writes its metrics page."""
    return Path(directory) / f"metrics-{pid}.prom"


def heartbeat_path(directory: Path, pid: int) -> Path:
    """The heartbeat file of worker process ``pid``."""
    return directory / f"{_PREFIX}{pid}{_SUFFIX}"


def write_heartbeat(
    directory: Path,
    *,
    pid: int,
    main_pid: int,
    main_start: str | None,
    state: State,
    problems: Sequence[str] = (),
) -> Path:
    """Write (atomically: temp file then rename) the heartbeat of ``pid``; its mtime is the beat."""
    directory.mkdir(parents=True, exist_ok=True)
    path = heartbeat_path(directory, pid)
    payload = {
        "pid": pid,
        "main_pid": main_pid,
        "main_start": main_start,
        "state": state,
        "at": time.time(),
        "problems": list(problems),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)
    return path


def read_heartbeats(directory: Path, *, now: float | None = None) -> list[HeartbeatRecord]:
    """Every heartbeat file in ``directory`` (none when it does not exist), oldest first.

    Age is ``now`` minus the file's mtime. A file that vanishes or is unreadable mid-read is skipped.
    """
    now = time.time() if now is None else now
    records = []
    try:
        paths = sorted(directory.glob(f"{_PREFIX}*{_SUFFIX}"))
    except OSError:
        return []
    for path in paths:
        try:
            mtime = path.stat().st_mtime
            data = json.loads(path.read_text())
            state: State = "stopping" if data.get("state") == "stopping" else "running"
            records.append(
                HeartbeatRecord(
                    path=path,
                    pid=int(data["pid"]),
                    main_pid=int(data["main_pid"]),
                    main_start=data.get("main_start"),
                    state=state,
                    age=max(0.0, now - mtime),
                    problems=tuple(str(problem) for problem in data.get("problems") or ()),
                )
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(records, key=lambda record: -record.age)


def remove_orphans(directory: Path, *, main_pid: int, main_start: str | None) -> list[int]:
    """Delete heartbeats left by process trees that are gone (a restarted container reusing ``directory``).

    Files of this tree (same main process) stay, even stale ones: a sibling killed before this worker
    booted must still fail the probe. Returns the pids whose files were removed.
    """
    removed = []
    for record in read_heartbeats(directory):
        if record.main_pid == main_pid and record.main_start == main_start:
            continue
        if _process_alive(record.main_pid, record.main_start):
            continue  # another live tree sharing the directory
        with contextlib.suppress(FileNotFoundError):
            record.path.unlink()
            removed.append(record.pid)
    return removed


def problem_lines(records: Sequence[HeartbeatRecord]) -> list[str]:
    """``worker <pid>: <problem>`` for each problem the (fresh) ``records`` report."""
    return [f"worker {record.pid}: {problem}" for record in records for problem in record.problems]


@dataclass(frozen=True)
class Verdict:
    """The liveness verdict over a set of heartbeats."""

    ok: bool
    fresh: list[HeartbeatRecord]
    stale: list[HeartbeatRecord]
    stopping: list[HeartbeatRecord]
    reasons: list[str]


def assess(records: Sequence[HeartbeatRecord], *, max_age: float, min_workers: int = 1) -> Verdict:
    """Live when at least ``min_workers`` running heartbeats are fresh, none is stale and none reports a problem.

    ``stopping`` heartbeats (a graceful shutdown in progress) are neither: they never fail the check.
    """
    fresh = [record for record in records if record.fresh(max_age)]
    stale = [record for record in records if record.state == "running" and not record.fresh(max_age)]
    stopping = [record for record in records if record.state == "stopping"]
    reasons = [f"worker {record.pid}: heartbeat {record.age:.1f}s old (max {max_age:g}s)" for record in stale]
    reasons += problem_lines(fresh)
    if len(fresh) < min_workers:
        reasons.append(f"{len(fresh)} fresh worker heartbeat(s), need at least {min_workers}")
    return Verdict(ok=not reasons, fresh=fresh, stale=stale, stopping=stopping, reasons=reasons)
