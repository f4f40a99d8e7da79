"""The bench's OTLP sink: the project's receiver in counting mode (``python -m otlp_receiver.counting``) in a
process of its own, and a client for its counters.

The sink runs apart so its decoding does not share the measured process's GIL. :func:`start_sink` is the one
place that launches it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["SINK_COMMAND", "Sink", "start_sink"]

SINK_COMMAND = (sys.executable, "-m", "otlp_receiver.counting", "--port", "0")
_ROOT = Path(__file__).resolve().parents[2]


def start_sink() -> tuple[subprocess.Popen[str], int]:
    """Start the sink on a free port; returns the process and its port once it listens.

    Raises:
        SystemExit: the sink did not say ``listening <port>``.
    """
    proc = subprocess.Popen(SINK_COMMAND, cwd=_ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if len(line) != 2 or line[0] != "listening":
        proc.kill()
        raise SystemExit(f"sink did not start: {line}")
    return proc, int(line[1])


class Sink:
    """The sink process (:func:`start_sink`) and its counters: an OTLP/HTTP receiver that counts spans."""

    def __init__(self) -> None:
        self.proc, port = start_sink()
        self.base = f"http://127.0.0.1:{port}"
        self.endpoint = f"{self.base}/v1/traces"

    def _call(self, path: str, method: str) -> dict[str, Any]:
        request = urllib.request.Request(self.base + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=30) as response:
            data: dict[str, Any] = json.load(response)
        return data

    def reset(self) -> dict[str, Any]:
        """Zero the counters; returns the counts before."""
        return self._call("/reset", "POST")

    def count(self) -> dict[str, Any]:
        """``{"spans", "requests", "bytes", "by_name"}`` since the last reset."""
        return self._call("/count", "GET")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
