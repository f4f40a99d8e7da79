"""What importing our code costs: ``import observability`` (the core) and ``import actors`` (a worker's imports).

Each measurement is a fresh interpreter timing only the ``import`` statement (``time.perf_counter`` around it),
repeated and summarised by the median. One more run under ``python -X importtime`` says where the time goes:
self time summed per top-level package (``opentelemetry``, ``sqlalchemy``, ...), so the shares add up to the
total. ``-X importtime`` slows imports down a little, so read its figures as shares, not as the timed median.
"""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from bench.common import ROOT

__all__ = ["import_result", "importtime_packages", "time_import"]

_TIMER = "import time as _t\n_s = _t.perf_counter()\nimport {module}\nprint(_t.perf_counter() - _s)\n"


def time_import(module: str, env: Mapping[str, str], repeats: int) -> list[float]:
    """Seconds the ``import module`` statement took, in ``repeats`` fresh interpreters."""
    seconds = []
    for _ in range(repeats):
        proc = subprocess.run(
            [sys.executable, "-c", _TIMER.format(module=module)],
            env=dict(env),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(f"import {module} failed:\n{proc.stderr[-2000:]}")
        seconds.append(float(proc.stdout.strip().splitlines()[-1]))
    return seconds


def importtime_packages(stderr: str, top: int = 8) -> tuple[float, list[tuple[str, float]]]:
    """Total ms and the ``top`` top-level packages by summed self time, from ``-X importtime`` output.

    Lines look like ``import time:       120 |        450 |   opentelemetry.trace``; the header line and
    anything else are skipped.
    """
    by_package: defaultdict[str, float] = defaultdict(float)  # ms
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line[len("import time:") :].split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue
        by_package[parts[2].strip().split(".")[0]] += int(parts[0]) / 1000
    ranked = sorted(by_package.items(), key=lambda item: -item[1])
    return sum(by_package.values()), ranked[:top]


def import_result(module: str, env: Mapping[str, str], repeats: int) -> dict[str, Any]:
    """The timed median's inputs plus the ``-X importtime`` breakdown, as one result line."""
    seconds = time_import(module, env, repeats)
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        env=dict(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    total_ms, packages = importtime_packages(proc.stderr)
    return {
        "scenario": "import",
        "variant": module,
        "seconds": seconds,
        "importtime_ms": total_ms,
        "packages": [[name, ms] for name, ms in packages],
    }
