"""A real worker (or scheduler) process for integration tests: own session, output in files, always killable."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Self

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DRAMATIQ = Path(sys.prefix) / "bin" / "dramatiq"


def migrated_sqlite_url(path: Path) -> str:
    """The URL of a SQLite database at ``path`` with the schema at head: a worker consumes only from then on."""
    from services.unit_of_work import create_schema, make_engine

    url = f"sqlite:///{path}"
    engine = make_engine(url)
    try:
        create_schema(engine)
    finally:
        engine.dispose()
    return url


def dramatiq_argv(*, processes: int = 1, threads: int = 2, module: str = "actors") -> list[str]:
    """``dramatiq --skip-logging <module> -p N -t N`` from this venv."""
    return [str(DRAMATIQ), "--skip-logging", module, "-p", str(processes), "-t", str(threads)]


class ServiceProcess:
    """``argv`` in its own session (process group) with ``env``, stdout and stderr in files under ``log_dir``."""

    def __init__(
        self, argv: list[str], env: dict[str, str], log_dir: Path, *, name: str = "worker", cwd: Path = PROJECT_ROOT
    ) -> None:
        self.argv, self.env, self.name, self.cwd = argv, env, name, cwd
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
