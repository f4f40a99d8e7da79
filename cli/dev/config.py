"""What ``tracedq dev`` runs against, and where it keeps its state: one frozen value, built from the options."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DevConfig"]


@dataclass(frozen=True)
class DevConfig:
    """Settings of one ``tracedq dev`` run.

    ``state_dir`` holds the trace store, the mailbox, the worker heartbeats and the lock that keeps a second
    ``tracedq dev`` from starting on the same state.
    """

    broker_url: str
    database_url: str
    state_dir: Path
    api_port: int = 8000
    smtp_port: int = 1025
    collector_port: int = 4318
    processes: int = 1
    threads: int = 4
    max_spans: int = 100_000
    scheduler: bool = True
    console_logs: bool = False  # children log with structlog's console renderer instead of JSON lines

    @property
    def store_path(self) -> Path:
        return self.state_dir / "traces.db"

    @property
    def mailbox_dir(self) -> Path:
        return self.state_dir / "mail"

    @property
    def heartbeat_dir(self) -> Path:
        return self.state_dir / "heartbeats"

    @property
    def api_key_path(self) -> Path:
        return self.state_dir / "api-key"

    @property
    def lock_path(self) -> Path:
        return self.state_dir / "dev.lock"

    @property
    def ports(self) -> dict[str, int]:
        """Every port this run listens on, by the service that listens."""
        return {"api": self.api_port, "smtp": self.smtp_port, "collector": self.collector_port}
