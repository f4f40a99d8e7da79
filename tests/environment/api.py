"""The producer API as a real process of a test: ``uvicorn api.main:app`` on a loopback port, live when returned."""

from __future__ import annotations

import sys

import httpx

from tests.environment.polling import wait_until
from tests.environment.processes import ServiceProcess

__all__ = ["api_argv", "api_url", "wait_until_live"]


def api_argv(port: int, *options: str) -> list[str]:
    """``python -m uvicorn api.main:app`` on 127.0.0.1:``port`` from this venv, with uvicorn ``options``."""
    return [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port), *options]


def api_url(port: int) -> str:
    """Where an API on 127.0.0.1:``port`` answers."""
    return f"http://127.0.0.1:{port}"


def wait_until_live(process: ServiceProcess, url: str, timeout: float = 60.0) -> None:
    """Wait until ``url``/health/live answers 200; fails at once when the process has exited, or after ``timeout``."""

    def live() -> bool:
        assert process.running, process.describe()
        try:
            return httpx.get(f"{url}/health/live", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    assert wait_until(live, timeout, interval=0.2), f"the API did not come up; {process.describe()}"
