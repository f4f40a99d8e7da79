"""Broadcast: every running worker process refreshes its in-process catalogue cache."""

from __future__ import annotations

__all__: list[str] = []
