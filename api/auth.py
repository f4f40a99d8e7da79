"""API keys: ``Authorization: Bearer <key>`` checked against SHA-256 digests, in constant time.

The keys arrive as digests (``actors.settings.api_key_digest``), so the process never holds a usable key.
Several digests are accepted at once: to rotate, deploy the new key beside the old one, move the callers,
then drop the old one. A missing or wrong key is a 401 in the API's error shape with ``WWW-Authenticate``
(RFC 6750), and nothing says which part was wrong beyond "missing" or "not valid".
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Security, params
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from actors.settings import api_key_digest

__all__ = ["UNAUTHORIZED", "ApiKeys", "NoApiKeys"]

#: The 401 as the OpenAPI document lists it on every protected route.
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"description": "no API key, or not a valid one (send `Authorization: Bearer <key>`)"}
}

_bearer = HTTPBearer(auto_error=False, description="An API key from API_KEYS / API_KEYS_FILE.")


class NoApiKeys(ValueError):
    """Authentication is on and no key is configured: the API would let nobody in (or, worse, everybody)."""


@dataclass(frozen=True)
class ApiKeys:
    """The accepted key digests; ``enabled=False`` only through :meth:`disabled`, so being open is a choice."""

    digests: tuple[bytes, ...]
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.enabled and not self.digests:
            raise NoApiKeys(
                "no API key configured: set API_KEYS (comma-separated) or API_KEYS_FILE (one key per line), "
                "or API_AUTH=off to run the API open to anyone (local development only)"
            )

    @classmethod
    def disabled(cls) -> ApiKeys:
        """No authentication at all (``API_AUTH=off``)."""
        return cls(digests=(), enabled=False)

    @classmethod
    def of(cls, *keys: str) -> ApiKeys:
        """From plain keys (tests, tools); the process keeps their digests only."""
        return cls(digests=tuple(api_key_digest(key) for key in keys))

    def accepts(self, key: str) -> bool:
        """True when ``key`` is one of the keys. Compares against every digest, so the time says nothing."""
        presented = api_key_digest(key)
        matched = False
        for digest in self.digests:
            matched |= hmac.compare_digest(presented, digest)
        return matched

    def dependencies(self) -> list[params.Depends]:
        """What a protected route declares: the bearer check (nothing when authentication is off)."""
        return [Security(self._check)] if self.enabled else []

    def _check(self, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:  # noqa: B008
        if credentials is None:
            raise HTTPException(
                401, "send the API key as `Authorization: Bearer <key>`", headers={"WWW-Authenticate": "Bearer"}
            )
        if not self.accepts(credentials.credentials):
            raise HTTPException(
                401, "the API key is not valid", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
            )
