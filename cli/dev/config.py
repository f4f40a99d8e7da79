"""What ``tracedq dev`` runs against, and where it keeps its state: one frozen value, built from the options."""

from __future__ import annotations

from dataclasses import dataclass, field
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

    # Where the state lives, all under ``state_dir``: set from it when the config is made, never passed in.
    store_path: Path = field(init=False)
    mailbox_dir: Path = field(init=False)
    heartbeat_dir: Path = field(init=False)
    api_key_path: Path = field(init=False)
    lock_path: Path = field(init=False)

    def __post_init__(self) -> None:
        state = {
            "store_path": "traces.db",
            "mailbox_dir": "mail",
            "heartbeat_dir": "heartbeats",
            "api_key_path": "api-key",
            "lock_path": "dev.lock",
        }
        for attribute, name in state.items():
            object.__setattr__(self, attribute, self.state_dir / name)  # frozen: the dataclass way to set it once

    @property
    def ports(self) -> dict[str, int]:
        """Every port this run listens on, by the service that listens."""
        return {"api": self.api_port, "smtp": self.smtp_port, "collector": self.collector_port}
