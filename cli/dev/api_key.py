"""The API key of a ``tracedq dev`` run: the API refuses to start without one (api/auth.py).

Unless the caller's environment already chooses (``API_KEYS``, ``API_KEYS_FILE`` or ``API_AUTH=off``), a random key
is made once in ``<state dir>/api-key`` (mode 600; ``.tracedq/`` is git-ignored) and the API reads it from there,
as under ``make api``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

__all__ = ["api_key_env"]


def api_key_env(key_file: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables the API process needs for its key: none if ``environ`` chose already, else ``API_KEYS_FILE``."""
    if environ.get("API_KEYS") or environ.get("API_KEYS_FILE") or environ.get("API_AUTH", "").lower() == "off":
        return {}
    if not key_file.exists() or not key_file.read_text().strip():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
    return {"API_KEYS_FILE": str(key_file)}
