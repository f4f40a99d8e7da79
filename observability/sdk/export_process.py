"""One export process, seen from the worker: start it, send it frames, read its answers, stop it.

``subprocess.Popen``, not ``fork``: the worker has threads (Dramatiq's, the span sender's), and a forked copy of
a threaded process may inherit locks held by threads that do not exist in it. The process inherits the
environment (so every ``OTEL_*`` setting) and answers on a pipe of its own, passed as a file descriptor, so its
stdout stays the worker's. See ``observability/sdk/export_child.py`` for the other side.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from observability.sdk.span_wire import read_frame, write_frame

__all__ = ["ExportProcess", "ExportProcessError", "default_command"]

_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding the observability package


class ExportProcessError(Exception):
    """The export process could not be started, or exited before it said it was ready."""


def default_command() -> list[str]:
    """This interpreter running ``observability.sdk.export_child``."""
    return [sys.executable, "-m", "observability.sdk.export_child"]


class ExportProcess:
    """A running export process. ``send`` and ``close`` may be called from different threads."""

    def __init__(self, popen: subprocess.Popen[bytes], replies: Any) -> None:
        self._popen = popen
        self._replies = replies
        self._send_lock = threading.Lock()
        self.pid = popen.pid

    @classmethod
    def start(cls, command: Sequence[str], environ: Mapping[str, str], timeout: float) -> ExportProcess:
        """Start the process and wait up to ``timeout`` seconds for it to say it is ready.

        Raises:
            ExportProcessError: it could not be started, or did not get ready in time.
        """
        read_fd, write_fd = os.pipe()
        env = dict(environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (_ROOT, env.get("PYTHONPATH"))))
        try:
            popen = subprocess.Popen(
                [*command, "--reply-fd", str(write_fd)], stdin=subprocess.PIPE, env=env, pass_fds=(write_fd,)
            )
        except OSError as exc:
            os.close(read_fd)
            raise ExportProcessError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            os.close(write_fd)  # the child's copy is the only one left: its exit ends our reads
        process = cls(popen, os.fdopen(read_fd, "rb"))
        ready, _, _ = select.select([read_fd], [], [], timeout)
        hello = read_frame(process._replies) if ready else None
        if hello is None or hello[0] != -1:
            process.kill()
            status = popen.wait()
            process._replies.close()
            if popen.stdin is not None:
                popen.stdin.close()
            raise ExportProcessError(
                f"exited with status {status} before it was ready" if status is not None else "not ready in time"
            )
        return process

    def send(self, payload: Any) -> None:
        """Write one frame; blocks (without the GIL) while the pipe is full.

        Raises:
            OSError: the process is gone (``BrokenPipeError``) or its stdin was closed.
        """
        stdin = self._popen.stdin
        if stdin is None:
            raise BrokenPipeError("no stdin")
        with self._send_lock:
            if stdin.closed:
                raise BrokenPipeError("stdin closed")
            write_frame(stdin, payload)

    def replies(self) -> Iterator[tuple[int, int, str | None, str]]:
        """Its answers, until it exits."""
        while (reply := read_frame(self._replies)) is not None:
            yield reply

    def close(self, timeout: float) -> bool:
        """Close its stdin, so it exits once it has answered what it got, and wait up to ``timeout`` seconds.

        Returns:
            Whether it exited by then; if it did not, it was killed.
        """
        if self._send_lock.acquire(timeout=max(0.0, timeout)):  # not while a send is writing
            try:
                if self._popen.stdin is not None:
                    self._popen.stdin.close()
            except OSError:
                pass
            finally:
                self._send_lock.release()
        try:
            self._popen.wait(max(0.0, timeout))
            return True
        except subprocess.TimeoutExpired:
            self.kill()
            self._popen.wait()
            return False

    def kill(self) -> None:
        """SIGKILL: a blocked send then fails at once, and its read of answers ends."""
        with contextlib.suppress(OSError):
            self._popen.kill()

    def wait(self, timeout: float) -> int | None:
        """Its exit status, waiting up to ``timeout`` seconds for it to exit (None if it still runs)."""
        try:
            return self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def abandon(self) -> None:
        """In a forked child, which does not own the process: let go of the inherited pipe ends.

        Otherwise this copy of its stdin would keep it from seeing end of file when the worker that started it
        exits. Each descriptor is pointed at /dev/null rather than closed, so the file objects' own close, later,
        cannot close an unrelated descriptor that reused the number, and a half-written frame left in a buffer
        by the fork goes nowhere.
        """
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            for stream in (self._popen.stdin, self._replies):
                if stream is not None:
                    os.dup2(devnull, stream.fileno())
        except (OSError, ValueError):
            pass
        finally:
            os.close(devnull)
