"""Benchmarks: ``python -m bench`` (``make bench``) runs them all; see docs/benchmarks.md."""

from __future__ import annotations

__all__: list[str] = []
