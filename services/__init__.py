"""Business logic: plain functions with their collaborators passed in, and no Dramatiq in sight."""

from __future__ import annotations

__all__: list[str] = []
