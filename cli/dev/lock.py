"""One ``tracedq dev`` per state directory: an exclusive ``flock`` on ``<state>/dev.lock`` holding our pid.

The kernel drops the lock when the process ends, however it ends, so a crashed run never blocks the next.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

__all__ = ["AlreadyRunning", "DevLock"]


class AlreadyRunning(Exception):
    """Another ``tracedq dev`` holds the lock."""


class DevLock:
    """``with DevLock(path):`` holds the lock for the block, or raises :class:`AlreadyRunning` at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> DevLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise AlreadyRunning(
                f"tracedq dev is already running on {self.path.parent.resolve()} (pid {holder}): "
                f"stop it first (Ctrl-C in its terminal, or kill {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
