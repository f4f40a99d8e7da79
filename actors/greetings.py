"""Thin actors over ``services.greetings``."""

from __future__ import annotations

import dramatiq

from services import greetings

__all__ = ["greet"]


@dramatiq.actor(actor_name="greet", queue_name="greetings", max_retries=3)
def greet(name: str, work_ms: int = 0) -> None:
    """Compose a greeting for ``name`` (the sample flow)."""
    greetings.greet(name, work_ms=work_ms)
