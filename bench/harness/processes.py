"""Processes and /proc: where the bench's children run from, how they are stopped, what they cost.

Thin wrappers over the operating system, used by the harness on the parent side and by the measuring children
(``bench/harness/overhead_child.py``) to read their own peak RSS.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

#: The repository root: the children's working directory and ``PYTHONPATH``.
ROOT = Path(__file__).resolve().parents[2]
DRAMATIQ = Path(sys.executable).with_name("dramatiq")

__all__ = ["DRAMATIQ", "ROOT", "cpu_seconds", "free_port", "group_cpu", "status_kib", "stop_process"]


def status_kib(field: str, pid: int | str = "self") -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``), or -1 when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def group_cpu(pgid: int) -> float:
    """utime + stime of every live process in a process group (a worker tree: main, workers, forks)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the child binds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process(proc: subprocess.Popen[Any] | None, timeout: float = 20.0) -> None:
    """SIGTERM to the main process only (Dramatiq forwards it), then SIGKILL to its process group.

    The process must have been started with ``start_new_session=True``, so its group is its own.
    """
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
