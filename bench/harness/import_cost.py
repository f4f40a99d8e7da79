"""What importing our code costs: ``import observability`` (the core) and ``import actors`` (a worker's imports).

Each measurement is a fresh interpreter timing only the ``import`` statement (``time.perf_counter`` around it),
repeated and summarised by the median. One more run under ``python -X importtime`` says where the time goes:
self time summed per top-level package (``opentelemetry``, ``sqlalchemy``, ...), so the shares add up to the
total; modules the interpreter loads before any statement runs are left out. ``-X importtime`` slows imports
down a little, so read its figures as shares, not as the timed median.
"""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from collections.abc import Collection, Mapping
from typing import Any

from bench.harness.processes import ROOT

__all__ = ["import_result", "importtime_packages", "time_import"]

_TIMER = "import time as _t\n_s = _t.perf_counter()\nimport {module}\nprint(_t.perf_counter() - _s)\n"


def _python(argv: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter with ``argv``, from the repository root; its output captured."""
    return subprocess.run(
        [sys.executable, *argv], env=dict(env), cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def time_import(module: str, env: Mapping[str, str], repeats: int) -> list[float]:
    """Seconds the ``import module`` statement took, in ``repeats`` fresh interpreters."""
    seconds = []
    for _ in range(repeats):
        proc = _python(["-c", _TIMER.format(module=module)], env)
        if proc.returncode != 0:
            raise SystemExit(f"import {module} failed:\n{proc.stderr[-2000:]}")
        seconds.append(float(proc.stdout.strip().splitlines()[-1]))
    return seconds


def _importtime_lines(stderr: str) -> list[tuple[str, int]]:
    """``(module, self µs)`` per line of ``-X importtime`` output; the header line and anything else skipped."""
    found = []
    for line in stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if line.startswith("import time:") and len(parts) == 3 and parts[0].strip().isdigit():
            found.append((parts[2].strip(), int(parts[0])))
    return found


def importtime_packages(
    stderr: str, top: int = 8, startup: Collection[str] = ()
) -> tuple[float, list[tuple[str, float]]]:
    """Total ms and the ``top`` top-level packages by summed self time, from ``-X importtime`` output.

    Lines look like ``import time:       120 |        450 |   opentelemetry.trace``. Modules in ``startup``
    (what the interpreter imports before any statement runs) are left out.
    """
    by_package: defaultdict[str, float] = defaultdict(float)  # ms
    for module, micros in _importtime_lines(stderr):
        if module not in startup:
            by_package[module.split(".")[0]] += micros / 1000
    ranked = sorted(by_package.items(), key=lambda item: -item[1])
    return sum(by_package.values()), ranked[:top]


def import_result(module: str, env: Mapping[str, str], repeats: int) -> dict[str, Any]:
    """The timed median's inputs plus the ``-X importtime`` breakdown, as one result line."""
    seconds = time_import(module, env, repeats)
    traced = {}
    for statement in ("pass", f"import {module}"):
        traced[statement] = _python(["-X", "importtime", "-c", statement], env).stderr
    startup = {name for name, _ in _importtime_lines(traced["pass"])}
    total_ms, packages = importtime_packages(traced[f"import {module}"], startup=startup)
    return {
        "scenario": "import",
        "variant": module,
        "seconds": seconds,
        "importtime_ms": total_ms,
        "packages": [[name, ms] for name, ms in packages],
    }
