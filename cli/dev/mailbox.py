"""The dev SMTP sink's mailbox: one ``.eml`` file per message, the newest ``limit`` kept.

Each file is written under a temporary name and renamed into place, so a reader (``tracedq dev emails``, a
mail client) never sees half a message. Names start with the receive time in nanoseconds: sorted by name is
sorted by time.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from dataclasses import dataclass
from email import message_from_bytes, policy
from pathlib import Path
from typing import Final

__all__ = ["DEFAULT_LIMIT", "Mail", "read_mailbox", "store_mail"]

DEFAULT_LIMIT: Final = 500


@dataclass(frozen=True)
class Mail:
    """One stored message, as ``tracedq dev emails`` lists it."""

    path: Path
    received_ns: int
    to: str
    subject: str
    body: str


def store_mail(directory: Path, raw: bytes, *, limit: int = DEFAULT_LIMIT) -> Path:
    """Keep ``raw`` (an RFC 5322 message) and drop the oldest beyond ``limit``. Returns the new file."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.eml"
    scratch = directory / f".{name}.tmp"
    scratch.write_bytes(raw)
    os.replace(scratch, directory / name)
    for old in sorted(directory.glob("*.eml"))[:-limit]:
        with contextlib.suppress(FileNotFoundError):
            old.unlink()
    return directory / name


def read_mailbox(directory: Path) -> list[Mail]:
    """Every stored message, newest first (none when the mailbox does not exist)."""
    mails = []
    for path in sorted(directory.glob("*.eml"), reverse=True):
        try:
            message = message_from_bytes(path.read_bytes(), policy=policy.default)
        except FileNotFoundError:  # pruned while we read
            continue
        body = message.get_body(preferencelist=("plain",))
        mails.append(
            Mail(
                path=path,
                received_ns=int(path.name.split("-", 1)[0]),
                to=str(message.get("To", "")),
                subject=str(message.get("Subject", "")),
                body=body.get_content().strip() if body is not None else "",
            )
        )
    return mails
