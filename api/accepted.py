"""The 202 every producing route answers: the message's id and the trace to open in Jaeger."""

from __future__ import annotations

from fastapi.responses import JSONResponse
from pydantic import BaseModel

__all__ = ["Accepted", "accepted_response"]


class Accepted(BaseModel):
    """What a 202 carries: the message's id and the trace to open in Jaeger."""

    message_id: str
    trace_id: str
    trace_url: str


def accepted_response(jaeger_url: str, message_id: str, trace_id: str) -> JSONResponse:
    """202 with :class:`Accepted` for ``message_id`` and its trace."""
    body = Accepted(message_id=message_id, trace_id=trace_id, trace_url=f"{jaeger_url}/trace/{trace_id}")
    return JSONResponse(status_code=202, content=body.model_dump())
