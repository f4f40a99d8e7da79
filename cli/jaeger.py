"""Jaeger: a trace read from its HTTP query API (``GET /api/traces/{id}``) into span views, and its UI link."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from cli.spanfile import SpanView

__all__ = ["JaegerError", "fetch_trace", "jaeger_link"]


def jaeger_link(jaeger_url: str, trace_id: str) -> str:
    """The Jaeger UI page of a trace."""
    return f"{jaeger_url.rstrip('/')}/trace/{trace_id}"


class JaegerError(Exception):
    """Jaeger could not be reached, or does not have the trace."""


def fetch_trace(base_url: str, trace_id: str, *, timeout: float = 10.0) -> list[SpanView]:
    """The spans of ``trace_id`` as Jaeger's query service returns them.

    Raises:
        JaegerError: the service is unreachable, answers an error, or has no such trace.
    """
    url = f"{base_url.rstrip('/')}/api/traces/{trace_id}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            document = json.load(response)
    except urllib.error.HTTPError as exc:
        raise JaegerError(f"{url}: HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise JaegerError(f"{url}: {exc}") from exc
    traces = document.get("data") or []
    if not traces:
        raise JaegerError(f"{url}: no such trace")
    return _views(traces[0])


def _views(jaeger_trace: dict[str, Any]) -> list[SpanView]:
    processes = jaeger_trace.get("processes", {})
    views = []
    for span in jaeger_trace.get("spans", []):
        tags = {tag["key"]: tag.get("value") for tag in span.get("tags", [])}
        parent = next((r["spanID"] for r in span.get("references", []) if r.get("refType") == "CHILD_OF"), None)
        failed = tags.get("error") is True or tags.get("otel.status_code") == "ERROR"
        start_ns = int(span["startTime"]) * 1000  # Jaeger speaks microseconds
        views.append(
            SpanView(
                trace_id=str(span["traceID"]).rjust(32, "0"),
                span_id=str(span["spanID"]).rjust(16, "0"),
                parent_id=str(parent).rjust(16, "0") if parent else None,
                name=span.get("operationName", ""),
                service=str(processes.get(span.get("processID"), {}).get("serviceName", "")),
                start_ns=start_ns,
                end_ns=start_ns + int(span.get("duration", 0)) * 1000,
                error=str(tags.get("otel.status_description") or "error") if failed else None,
                attributes=tags,
            )
        )
    return views
