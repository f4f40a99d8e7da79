"""The trace store's SQLite file: its tables and version, how it is opened, and one transaction per batch.

:mod:`cli.tracestore.store` says why SQLite in WAL mode; this module is the file format it writes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

__all__ = ["StoreError", "Transaction", "connect", "dumps_attributes"]

_VERSION: Final = 1

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS spans (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_id TEXT,
    name TEXT NOT NULL, service TEXT NOT NULL, start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,
    error TEXT, attributes TEXT NOT NULL,
    UNIQUE (trace_id, span_id)
);
CREATE TABLE IF NOT EXISTS traces (
    trace_id TEXT PRIMARY KEY, start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,
    span_count INTEGER NOT NULL, last_received REAL NOT NULL, last_seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS traces_by_start ON traces (start_ns);
CREATE INDEX IF NOT EXISTS traces_by_seq ON traces (last_seq);
CREATE INDEX IF NOT EXISTS traces_by_received ON traces (last_received);
CREATE TABLE IF NOT EXISTS logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL, time_ns INTEGER NOT NULL,
    severity TEXT NOT NULL, body TEXT NOT NULL, service TEXT NOT NULL, attributes TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_by_trace ON logs (trace_id);
"""


class StoreError(Exception):
    """The store does not exist, or was written by an incompatible version."""


def connect(path: str, *, create: bool) -> sqlite3.Connection:
    """The store at ``path`` (``:memory:`` for a throwaway one), its tables made when ``create`` and missing.

    Raises:
        StoreError: there is no file and ``create`` is false, or the file is not a store of this version.
    """
    in_memory = path == ":memory:"
    if not in_memory and not create and not Path(path).exists():
        raise StoreError(f"no trace store at {path}")
    if not in_memory:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA busy_timeout=30000")
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if create and version == 0:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version={_VERSION}")
    elif version != _VERSION:
        db.close()
        raise StoreError(f"{path} is not a tracedq trace store of version {_VERSION} (it says {version})")
    db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, never corrupt
    return db


class Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error): one batch, all or nothing."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def dumps_attributes(attributes: dict[str, Any]) -> str:
    """Attributes as the JSON the store keeps: bytes as hex, sequences as lists, anything else as text."""
    return json.dumps(attributes, default=_plain, separators=(",", ":"))


def _plain(value: object) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Sequence):
        return list(value)
    return str(value)
