"""Where the local trace store lives and how big it may grow, unless told otherwise (the CLI reads these)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = ["DEFAULT_MAX_SPANS", "DEFAULT_STORE"]

DEFAULT_STORE: Final = Path(".tracedq") / "traces.db"
#: About 60 MB of SQLite with this project's order traces and their log records (measured: 58 MB at the bound).
DEFAULT_MAX_SPANS: Final = 100_000
