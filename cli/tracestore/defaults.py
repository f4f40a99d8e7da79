"""Where the local trace store lives and how big it may grow, unless told otherwise (the CLI reads these)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = ["DEFAULT_MAX_SPANS", "DEFAULT_STORE"]

DEFAULT_STORE: Final = Path(".tracedq") / "traces.db"
#: About 100 MB of SQLite with this project's spans (roughly 1 KB each with attributes and indexes).
DEFAULT_MAX_SPANS: Final = 100_000
