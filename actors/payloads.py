"""Message payloads: pydantic models, validated when sent and again when received.

Each payload carries ``schema_version``. A worker refuses a version newer than it knows, the same way as
an invalid payload: ``services.errors.InvalidPayload``, which every actor lists in ``throws``, so the
message goes to the dead-letter queue at once with the field and the problem as the reason.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.errors import InvalidPayload

__all__ = ["OrderLine", "OrderRef", "Payload", "PlaceOrder", "RegisterUser", "UserRef", "pattern_problem"]

# ASCII whitespace spelled out: ``\s`` means different things to Python and to the JSON-Schema (ECMA)
# regex dialect, and the OpenAPI document must accept exactly what the model accepts.
# No NUL (U+0000) anywhere: PostgreSQL text cannot store it, and the database's DataError would be retried
# for a quarter of an hour like an outage before the message reached the dead-letter queue (issue 7, fault 6).
_EMAIL = r"^[^@ \t\r\n\x00]+@[^@ \t\r\n\x00]+\.[^@ \t\r\n\x00]+$"
_TEXT = r"^[^\x00]*$"

# What each pattern asks for, in words: a client told "String should match pattern '^[^@ \t...'" learns nothing.
_PATTERN_PROBLEMS = {
    _EMAIL: "Input should be an email address like name@example.com",
    _TEXT: "Input should not contain the NUL character (U+0000)",
}


def pattern_problem(pattern: str) -> str:
    """The problem to report for a value that does not match one of the payloads' ``pattern`` constraints."""
    return _PATTERN_PROBLEMS.get(pattern, "Input is not in a form this field accepts")


class Payload(BaseModel):
    """Base of every payload: strict fields, no extras, a schema version."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    SCHEMA_VERSION: ClassVar[int] = 1
    schema_version: int = Field(
        default=1,
        ge=1,
        description="Payload schema version; this service reads 1.",
        json_schema_extra={"maximum": 1},  # documented; the validator below says why a newer one is refused
    )

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, version: int) -> int:
        if version > cls.SCHEMA_VERSION:
            raise ValueError(f"{version} is newer than this service understands (max {cls.SCHEMA_VERSION})")
        return version

    @classmethod
    def parse(cls, data: Any) -> Self:
        """Validate ``data``; raise ``InvalidPayload`` naming each bad field and what is wrong with it."""
        if isinstance(data, dict):
            version = data.get("schema_version", 1)
            if isinstance(version, int) and version > cls.SCHEMA_VERSION:
                raise InvalidPayload(
                    f"schema_version: {version} is newer than this worker understands (max {cls.SCHEMA_VERSION})"
                )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or '<payload>'}: {error['msg']}" for error in exc.errors()
            )
            raise InvalidPayload(f"{cls.__name__}: {problems}") from None

    def wire(self) -> dict[str, Any]:
        """The JSON-safe dict that travels in the message."""
        return self.model_dump(mode="json")


class OrderLine(BaseModel):
    """One SKU and quantity (part of a payload, so no version of its own)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sku: str = Field(min_length=1, max_length=64, pattern=_TEXT)
    quantity: int = Field(gt=0, le=10_000)


class PlaceOrder(Payload):
    """Place an order."""

    order_id: str = Field(min_length=1, max_length=64, pattern=_TEXT)
    customer_email: str = Field(pattern=_EMAIL, max_length=320)
    lines: list[OrderLine] = Field(min_length=1, max_length=100)


class OrderRef(Payload):
    """A step on an existing order."""

    order_id: str = Field(min_length=1, max_length=64, pattern=_TEXT)


class RegisterUser(Payload):
    """Register a user."""

    user_id: str = Field(min_length=1, max_length=64, pattern=_TEXT)
    email: str = Field(pattern=_EMAIL, max_length=320)
    name: str = Field(min_length=1, max_length=200, pattern=_TEXT)


class UserRef(Payload):
    """A step on an existing user."""

    user_id: str = Field(min_length=1, max_length=64, pattern=_TEXT)
