"""Start services in order, each ready before the next; watch them; stop them in reverse order, nothing left behind.

Each service runs in a session of its own, so a Ctrl-C in the terminal reaches only us and we decide the
order; each also gets SIGTERM if we die without stopping it (``parent_death.py``). Stopping sends SIGTERM to
the service's main process only (Dramatiq's main process forwards it to its worker processes; a second
SIGTERM would make them exit without flushing), waits, and SIGKILLs the whole process group when the time is
up or when anything of the group outlives its main process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

from cli.dev.output import Output
from cli.dev.parent_death import die_with_parent
from cli.dev.services import Service

__all__ = ["StartupFailed", "Supervisor"]

# How long what a service started may outlive it: the API's span export process exits about 2 s after the
# API (it sees the end of its input, exports what it holds, shuts the exporter down).
_LEFTOVER_GRACE = 6.0


class StartupFailed(Exception):
    """A service exited or did not get ready in time, or a stop was asked for during startup."""


@dataclass
class _Running:
    service: Service
    proc: subprocess.Popen[bytes]
    pump: threading.Thread


class Supervisor:
    """Runs services and stops them. ``stop_requested`` is set by the signal handlers (:meth:`request_stop`)."""

    def __init__(self, output: Output) -> None:
        self.output = output
        self.stop_requested = threading.Event()
        self.hurry = threading.Event()  # a second Ctrl-C: kill what is left now
        self._running: list[_Running] = []
        self._preexec = die_with_parent()

    @property
    def pids(self) -> dict[str, int]:
        return {running.service.name: running.proc.pid for running in self._running}

    def request_stop(self) -> None:
        """First call: stop in order. Second call: stop at once (SIGKILL)."""
        if self.stop_requested.is_set():
            self.hurry.set()
        self.stop_requested.set()

    def start(self, service: Service) -> None:
        """Start ``service`` and wait until it is ready.

        Raises:
            StartupFailed: it exited, was not ready within its ``ready_timeout``, or a stop was requested.
        """
        proc = self._spawn(service)
        assert proc.stdout is not None
        running = _Running(service, proc, self.output.pump(service.name, proc.stdout))
        self._running.append(running)
        self.output.say(f"started {service.name} (pid {proc.pid})")
        deadline = time.monotonic() + service.ready_timeout
        while not service.ready(proc.pid):
            if proc.poll() is not None:
                raise StartupFailed(f"{service.name} exited with code {proc.returncode} while starting")
            if self.stop_requested.is_set():
                raise StartupFailed("stop requested while starting")
            if time.monotonic() > deadline:
                raise StartupFailed(f"{service.name} was not ready after {service.ready_timeout:.0f} s")
            time.sleep(0.1)

    def _spawn(self, service: Service) -> subprocess.Popen[bytes]:
        """``service`` in a session of its own, its stdout and stderr merged into one pipe for the output pump."""
        return subprocess.Popen(
            service.argv,
            env=service.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=self._preexec,
        )

    def run_step(self, step: Service) -> int:
        """Run a one-shot ``step`` to its end (at most ``step.ready_timeout`` s); its exit code, -9 if killed."""
        proc = self._spawn(step)
        assert proc.stdout is not None
        pump = self.output.pump(step.name, proc.stdout)
        try:
            proc.wait(timeout=step.ready_timeout)
        except subprocess.TimeoutExpired:
            self.output.say(f"{step.name} did not finish in {step.ready_timeout:.0f} s: killing it")
        self._kill_group(proc.pid, grace=0 if proc.poll() is None else _LEFTOVER_GRACE)
        proc.wait()
        pump.join(timeout=5)
        return proc.returncode

    def watch(self) -> str | None:
        """Block until a stop is requested (returns None) or a service exits on its own (returns why)."""
        while not self.stop_requested.wait(0.2):
            for running in self._running:
                code = running.proc.poll()
                if code is not None:
                    return f"{running.service.name} exited with code {code}"
        return None

    def stop_all(self) -> bool:
        """Stop every started service, last started first. Returns whether each stopped within its time."""
        clean = True
        for running in reversed(self._running):
            clean = self._stop(running) and clean
        for running in self._running:
            running.pump.join(timeout=5)  # the last lines a process wrote before it exited
        self._running.clear()
        return clean

    def _stop(self, running: _Running) -> bool:
        name, proc = running.service.name, running.proc
        started = time.monotonic()
        if proc.poll() is None:
            self.output.say(f"stopping {name}")
            if not self.hurry.is_set():
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
            deadline = started + running.service.stop_timeout
            while proc.poll() is None and time.monotonic() < deadline and not self.hurry.is_set():
                time.sleep(0.05)
        in_time = proc.poll() is not None
        if not in_time and self.hurry.is_set():
            self.output.say(f"{name}: killing it (asked twice to stop)")
        elif not in_time:
            self.output.say(f"{name} did not stop in {running.service.stop_timeout:.0f} s: killing it")
        leftovers = self._kill_group(proc.pid, grace=0 if not in_time else _LEFTOVER_GRACE)
        proc.wait()
        if leftovers:
            self.output.say(f"{name}: killed processes it left running")
        self.output.say(f"{name} stopped ({_exit_text(proc.returncode)}, {time.monotonic() - started:.1f} s)")
        return in_time and not leftovers

    def _kill_group(self, pgid: int, *, grace: float) -> bool:
        """SIGKILL what is left in the process group after ``grace`` seconds. Returns whether anything was."""
        deadline = time.monotonic() + grace
        while _group_alive(pgid):
            if time.monotonic() >= deadline or self.hurry.is_set():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
                gone = time.monotonic() + 5  # until the kernel (and whoever reaps them) is done with them
                while _group_alive(pgid) and time.monotonic() < gone:
                    time.sleep(0.02)
                return True
            time.sleep(0.05)
        return False


def _exit_text(code: int) -> str:
    # uvicorn ends by re-raising the SIGTERM it handled: a negative code is a signal, not a failure.
    return f"on {signal.Signals(-code).name}" if code < 0 else f"exit {code}"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
