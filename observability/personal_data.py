"""Whether an exception's text may leave the process (a span, a log line, a dead letter's headers).

Exception texts often quote the input that failed (``invalid email 'ada@example.com'``), and actor arguments
often hold personal data. So an exception's text is shown only when the user turned capture on, or when its
class declares that its text never holds input values: a class attribute ``safe_to_log = True`` (for example a
validation error that names the field and the problem, never the value). Its type is always shown.
"""

from __future__ import annotations

from typing import Final

__all__ = ["HIDDEN", "described", "shareable_text"]

#: What stands for an exception's text that may not leave the process.
HIDDEN: Final = "[hidden: may hold personal data]"


def shareable_text(exception: BaseException, *, capture: bool) -> str | None:
    """``str(exception)`` when ``capture`` is on or the class says ``safe_to_log = True``; otherwise None."""
    if capture or getattr(type(exception), "safe_to_log", False) is True:
        return str(exception)
    return None


def described(exception: BaseException, *, capture: bool) -> str:
    """``Type: text`` for a span status or a log field, the text replaced by :data:`HIDDEN` when not shareable."""
    text = shareable_text(exception, capture=capture)
    return f"{type(exception).__name__}: {HIDDEN if text is None else text}"
