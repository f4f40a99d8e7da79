"""Liveness, readiness (broker and database, each reported) and the Prometheus scrape endpoint."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from fastapi import FastAPI, Response, params
from fastapi.responses import JSONResponse

from worker_health.readiness import failure_text

__all__ = ["Checks", "install_health_routes"]


@dataclass
class Checks:
    """Readiness probes by name (each returns normally when healthy, raises otherwise) and the metrics page."""

    probes: dict[str, Callable[[], None]] = field(default_factory=dict)
    render_metrics: Callable[[], bytes] = lambda: b""


def install_health_routes(app: FastAPI, checks: Checks, *, metrics_dependencies: Sequence[params.Depends] = ()) -> None:
    """GET /health/live, /health/ready (always open: probes carry no key) and /metrics (behind the key when asked)."""

    @app.get("/health/live", tags=["health"])
    def live() -> dict[str, str]:
        """The process is up and serving."""
        return {"status": "ok"}

    @app.get("/health/ready", tags=["health"], responses={503: {"description": "a dependency is down"}})
    def ready() -> JSONResponse:
        """Each dependency checked now: 200 when all answer, 503 naming the ones that do not."""
        report: dict[str, dict[str, object]] = {}
        for name, probe in checks.probes.items():
            try:
                probe()
                report[name] = {"ok": True}
            except Exception as exc:
                report[name] = {"ok": False, "error": failure_text(exc)}
        healthy = all(entry["ok"] for entry in report.values())
        return JSONResponse(status_code=200 if healthy else 503, content={"ready": healthy, "checks": report})

    @app.get("/metrics", tags=["health"], response_class=Response, dependencies=list(metrics_dependencies))
    def metrics() -> Response:
        """Prometheus text exposition."""
        return Response(checks.render_metrics(), media_type="text/plain; version=0.0.4; charset=utf-8")
