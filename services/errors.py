"""The error hierarchy of the service layer: what to retry and what never to retry.

Actors list ``PermanentError`` in ``throws`` (dead-lettered at once, not an error on the span) and let
``TransientError`` propagate to Dramatiq's ``Retries`` (exponential backoff with jitter).
"""

from __future__ import annotations

__all__ = [
    "EmailRejected",
    "EmailUnavailable",
    "InvalidPayload",
    "PermanentError",
    "ServiceError",
    "TransientError",
    "UnknownOrder",
    "UnknownProduct",
    "UnknownUser",
]


class ServiceError(Exception):
    """Base of every error the services raise on purpose."""


class PermanentError(ServiceError):
    """Retrying cannot help: the input or the state of the world is wrong."""


class TransientError(ServiceError):
    """Retrying later may succeed: a dependency is down or slow."""


class InvalidPayload(PermanentError):
    """A message payload failed validation; the text names the field and the problem, never the value."""

    #: Its text may be logged and kept with a dead letter even when personal data is not captured.
    safe_to_log = True


class UnknownProduct(PermanentError):
    """An order line names a SKU the catalogue does not have."""


class UnknownOrder(PermanentError):
    """A step refers to an order that was never placed."""


class UnknownUser(PermanentError):
    """A step refers to a user that was never registered."""


class EmailUnavailable(TransientError):
    """The SMTP server refused for now (4xx), timed out, or the circuit to it is open."""


class EmailRejected(PermanentError):
    """The SMTP server refused for good (5xx): bad address, policy."""
