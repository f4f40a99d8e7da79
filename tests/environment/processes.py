"""A real process of a test (worker tree, API, scheduler): own session, output in files, always killable.

``ServiceProcess`` runs any argv; tests/environment/worker.py and api.py say which argv and environment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from otlp_receiver import OtlpReceiver, ReceivedSpan

__all__ = ["PROJECT_ROOT", "ServiceProcess", "child_pids", "proc_stat", "proc_stats"]

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class ServiceProcess:
    """``argv`` in its own session (process group) with ``env``, stdout and stderr in files under ``log_dir``.

    ``service`` is its ``OTEL_SERVICE_NAME`` (its spans at the receiver: ``spans``); ``base_url`` is where an API
    process listens ("" for a worker).
    """

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        log_dir: Path,
        *,
        name: str = "worker",
        cwd: Path = PROJECT_ROOT,
        base_url: str = "",
    ) -> None:
        self.argv, self.env, self.name, self.cwd = argv, env, name, cwd
        self.service = env.get("OTEL_SERVICE_NAME", "")
        self.base_url = base_url
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = log_dir / f"{name}.stdout"
        self.stderr_path = log_dir / f"{name}.stderr"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        # Files, not pipes: hundreds of log lines would fill a pipe nobody drains and block the process.
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM to the main process only, as an orchestrator sends it; wait for a graceful exit.

        Not to the whole group: Dramatiq's main process forwards SIGTERM to its workers, and a worker
        that gets a second SIGTERM during shutdown exits at once ("Killing worker process...").
        """
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL whatever is left of the process group (a crash: no ack, no flush). Safe to call twice."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def output(self) -> str:
        """Everything the process wrote (Dramatiq relays worker-process stdout through the main's stderr)."""
        return self.stdout_path.read_text(errors="replace") + self.stderr_path.read_text(errors="replace")

    def describe(self) -> str:
        code = None if self.proc is None else self.proc.poll()
        return f"{self.name} exit code {code}; output tail:\n{self.output()[-4000:]}"

    def spans(self, receiver: OtlpReceiver) -> list[ReceivedSpan]:
        """The spans this process exported so far (told apart from other processes' by ``service``)."""
        return [span for span in receiver.spans if span.resource.get("service.name") == self.service]


def proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after "pid (comm) ": state, ppid, ... (index 19: start time); None when
    the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def proc_stats() -> dict[int, list[str]]:
    """Every live process (zombies too) -> its ``proc_stat`` fields."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := proc_stat(int(entry.name))) is not None:
            stats[int(entry.name)] = fields
    return stats


def child_pids(process: ServiceProcess) -> set[int]:
    """The live direct children of ``process`` (Dramatiq's worker processes), read from ``/proc/<pid>/stat``."""
    assert process.proc is not None
    parent = process.proc.pid
    return {pid for pid, fields in proc_stats().items() if int(fields[1]) == parent and fields[0] != "Z"}
