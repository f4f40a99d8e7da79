"""The producer HTTP API: thin routes that validate and `.send()`; no business logic."""

from __future__ import annotations

__all__: list[str] = []
