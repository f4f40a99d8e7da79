"""``tracedq dev``'s SMTP sink: accepts every message into the mailbox and prints its subject and recipient.

Run as ``python -m cli.dev.smtp_sink --port 1025 --mailbox .tracedq/mail``. The recipient is printed with
its local part masked (it is personal data, and this output is a log); ``tracedq dev emails`` shows it whole.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from cli.dev.mailbox import DEFAULT_LIMIT, store_mail

__all__ = ["MailboxHandler", "main", "mask"]


def mask(address: str) -> str:
    """``ada@example.com`` -> ``a***@example.com``."""
    local, at, domain = address.partition("@")
    return f"{local[:1]}***{at}{domain}" if at else "***"


class MailboxHandler:
    """aiosmtpd handler: every message is stored and acknowledged with 250."""

    def __init__(self, mailbox: Path, limit: int = DEFAULT_LIMIT) -> None:
        self.mailbox, self.limit = mailbox, limit

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        from email import message_from_bytes, policy

        raw = envelope.original_content or envelope.content
        path = store_mail(self.mailbox, raw, limit=self.limit)
        subject = message_from_bytes(raw, policy=policy.default).get("Subject", "")
        recipients = ", ".join(mask(r) for r in envelope.rcpt_tos)
        print(f"mail to {recipients}: {subject!s}  ({path.name})", flush=True)
        return "250 OK"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.dev.smtp_sink", description=__doc__)
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--mailbox", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-connection INFO lines

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    controller = Controller(MailboxHandler(args.mailbox), hostname="127.0.0.1", port=args.port)
    try:
        controller.start()
    except Exception as exc:  # aiosmtpd wraps the bind error in its own types
        print(f"cannot listen on 127.0.0.1:{args.port}: {exc}", flush=True)
        return 1
    print(f"SMTP on 127.0.0.1:{args.port}, mail kept in {args.mailbox} (see: tracedq dev emails)", flush=True)
    while not stop.wait(0.5):  # a timeout, so the signal handler runs promptly
        pass
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
