"""What a measured process gets from the bench: only the variables it needs to run, and a migrated database.

A stray ``OTEL_*``, ``BROKER_URL``, ``dramatiq_*`` or ``RABBITMQ_QUEUE_TYPE`` in the caller's shell must not change
what is measured, so children start from :func:`passed_env` and get everything else set explicitly.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PASSED_ENV", "migrated_sqlite", "passed_env"]

#: Only what a process needs to run.
PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")


def passed_env() -> dict[str, str]:
    """The caller's values of :data:`PASSED_ENV` (those it has)."""
    return {key: os.environ[key] for key in PASSED_ENV if key in os.environ}


def migrated_sqlite(path: Path) -> str:
    """``sqlite:///<path>`` with the schema at head (made once): workers of our broker consume nothing until their
    database is migrated (worker_health/schema_gate.py)."""
    url = f"sqlite:///{path}"
    if not path.exists():
        from services.unit_of_work import create_schema, make_engine

        path.parent.mkdir(parents=True, exist_ok=True)
        engine = make_engine(url)
        create_schema(engine)
        engine.dispose()
    return url
