"""Write ``docs/schemas/<actor>.json``, the JSON Schema of each payload actor's message, from the pydantic models.

Usage: ``python scripts/payload_schemas.py [--check] [--out DIR]`` (``make schemas`` writes them). ``--check``
writes nothing and exits 1 naming each file that is missing, stale or no longer generated; the tests run it.
The schemas themselves are built by ``actors.payload_schemas``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "schemas"

# Importing ``actors`` builds the broker and sets up telemetry: in memory and exporting nothing, so generating
# the schemas needs no RabbitMQ and no collector.
os.environ.setdefault("BROKER_URL", "memory://")
for _variable in ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER"):
    os.environ.setdefault(_variable, "none")
sys.path.insert(0, str(ROOT))

from actors.broker import broker  # noqa: E402  (after the environment above)
from actors.payload_schemas import schema_files  # noqa: E402


def drift(out: Path, wanted: dict[str, str]) -> list[str]:
    """One line per file in ``out`` that differs from ``wanted`` (missing, stale, or generated no more)."""
    present = {path.name for path in out.glob("*.json")} if out.is_dir() else set()
    problems = [f"{name}: missing" for name in sorted(set(wanted) - present)]
    problems += [
        f"{name}: differs from the model"
        for name in sorted(set(wanted) & present)
        if (out / name).read_text(encoding="utf-8") != wanted[name]
    ]
    problems += [f"{name}: no payload actor generates it" for name in sorted(present - set(wanted))]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when the files drifted")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the schema folder (default: docs/schemas)")
    args = parser.parse_args(argv)
    wanted = schema_files(broker)
    if args.check:
        problems = drift(args.out, wanted)
        for problem in problems:
            print(f"{args.out / problem}", file=sys.stderr)
        if problems:
            print("the message schemas drifted from actors/payloads.py: run `make schemas`", file=sys.stderr)
        return 1 if problems else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.out.glob("*.json"):
        if path.name not in wanted:  # an actor renamed or gone: its schema must not linger
            path.unlink()
    for name, text in wanted.items():
        (args.out / name).write_text(text, encoding="utf-8")
        print(args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
