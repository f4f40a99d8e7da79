"""Periodic actors, run by ``periodiq actors``."""

from __future__ import annotations

__all__: list[str] = []
