"""Where a worker's resident memory goes: the RSS each import adds, in the order a traced worker imports them.

One fresh interpreter per chain; each line is VmRSS after importing the module, less VmRSS before the first
import of the chain. The default chains are the ones behind the ``worker peak RSS`` column of the overhead table:
the core with the span SDK (``tracing``), then what ``LogContext`` and ``Metrics`` with an OTLP and a Prometheus
reader add (``tracing_full``), and structlog alone (it imports rich's traceback module whenever rich is installed).

Usage::

    uv run --locked python bench/import_rss.py
    uv run --locked python bench/import_rss.py dramatiq structlog    # one chain of your own
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness.processes import ROOT

__all__ = ["CHAINS", "main"]

CHAINS = (
    (
        "dramatiq",
        "opentelemetry.sdk.trace",
        "observability",
        "opentelemetry.sdk.metrics",
        "opentelemetry.exporter.prometheus",
        "opentelemetry.exporter.otlp.proto.http.metric_exporter",
        "structlog",
    ),
    ("dramatiq", "opentelemetry.sdk.trace", "observability", "structlog"),
    ("rich.console", "rich.traceback", "structlog"),
)

_MEASURE = """
import importlib, sys
def rss():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024
base = rss()
for name in sys.argv[1:]:
    importlib.import_module(name)
    print(f"{name}\\t{rss() - base:.1f}")
"""


def measure(chain: tuple[str, ...]) -> list[tuple[str, float]]:
    """(module, MiB of RSS over the fresh interpreter's) after each import of ``chain``, in one new process."""
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, *chain], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    ).stdout
    return [(name, float(mib)) for name, mib in (line.split("\t") for line in out.splitlines())]


def main(argv: list[str]) -> None:
    for chain in [tuple(argv)] if argv else CHAINS:
        previous = 0.0
        for name, mib in measure(chain):
            print(f"{name:60} +{mib:5.1f} MiB  (this import: +{mib - previous:.1f})")
            previous = mib
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
