"""uvicorn's log records through the process's structlog setup (JSON lines), not uvicorn's own text handlers.

uvicorn configures its loggers (``uvicorn``, ``uvicorn.error``, ``uvicorn.access``) with handlers of its own
and ``propagate=False`` before it imports the app, so its startup and access lines bypassed the root handler
``configure_logging`` installed: plain text on stderr and stdout between the JSON lines. Once the app module
runs, :func:`route_uvicorn_logs` hands them to the root handler. An access record becomes the event
``http_request`` with ``method``, ``path`` (without the query string) and ``status`` fields; the client
address is dropped (personal data stays out of logs).
"""

from __future__ import annotations

import logging

__all__ = ["UVICORN_LOGGERS", "route_uvicorn_logs"]

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


class _AccessFields(logging.Filter):
    """uvicorn's access record (args: client, method, full path, HTTP version, status) as fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) == 5:
            _client, method, full_path, http_version, status = record.args
            record.msg, record.args = "http_request", ()
            record.method = method
            record.path = str(full_path).split("?", 1)[0]
            record.http_version = http_version
            record.status = status
        return True


def route_uvicorn_logs() -> None:
    """Drop uvicorn's handlers and let its records propagate to the root logger's handler."""
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(existing, _AccessFields) for existing in access.filters):
        access.addFilter(_AccessFields())
