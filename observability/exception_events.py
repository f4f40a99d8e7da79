"""The ``exception`` span event, as the SDK's ``record_exception`` writes it, at a tenth of its cost.

``Span.record_exception`` formats the stack trace with ``traceback.format_exception``, which on Python 3.11+
parses each frame's source line with ``ast`` to draw ``^^^^`` anchors under the failing expression: about
200 µs for a ten-frame traceback on our machine, on the worker's GIL, for every failed attempt. The same
event (type, message, stack trace, escaped) with the classic anchor-free trace costs about 11 µs
(``bench/exception_event.py`` pairs the two). The trace keeps every frame, its source line and the
exception chain; only the anchors are left out.
"""

from __future__ import annotations

import linecache
import traceback
from typing import Final

from opentelemetry.trace import Span

from observability import semconv
from observability.personal_data import HIDDEN, shareable_text

__all__ = ["record_exception", "stack_trace"]

_CAUSE: Final = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT: Final = "\nDuring handling of the above exception, another exception occurred:\n\n"
_REPEATS: Final = 3  # traceback._RECURSIVE_CUTOFF
_MAX_CHAIN: Final = 16  # a cycle of __context__ links must not loop forever


def record_exception(span: Span, exception: BaseException, *, capture: bool) -> None:
    """Add the ``exception`` event to ``span``, with the attributes ``Span.record_exception`` would set.

    Unless ``capture``, texts that may hold personal data (observability/personal_data.py) are replaced by
    :data:`HIDDEN`, in the message and in the stack trace's exception lines alike.
    """
    cls = type(exception)
    text = shareable_text(exception, capture=capture)
    span.add_event(
        semconv.EXCEPTION_EVENT,
        {
            semconv.EXCEPTION_TYPE: _qualified(cls),
            semconv.EXCEPTION_MESSAGE: HIDDEN if text is None else text,
            semconv.EXCEPTION_STACKTRACE: stack_trace(exception, capture=capture),
            semconv.EXCEPTION_ESCAPED: "False",
        },
    )


def stack_trace(exception: BaseException, *, capture: bool = True) -> str:
    """The traceback text of ``exception`` and its chain, as Python prints it minus the ``^^^`` anchors; unless
    ``capture``, each exception's text that may hold personal data is replaced by :data:`HIDDEN`."""
    chain: list[tuple[BaseException, str]] = []
    current: BaseException | None = exception
    link = ""
    while current is not None and len(chain) < _MAX_CHAIN and all(current is not seen for seen, _ in chain):
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, _CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, _CONTEXT
        else:
            current = None
    parts: list[str] = []
    for error, link in reversed(chain):  # the root cause first, as Python prints it
        if error.__traceback__ is not None:
            parts.append("Traceback (most recent call last):\n")
            _frames(error, parts)
        if capture or shareable_text(error, capture=False) is not None:
            parts.extend(traceback.format_exception_only(type(error), error))
        else:
            parts.append(f"{_qualified(type(error))}: {HIDDEN}\n")
        parts.append(link)
    return "".join(parts)


def _qualified(cls: type) -> str:
    module = cls.__module__
    return f"{module}.{cls.__qualname__}" if module and module != "builtins" else cls.__qualname__


def _frames(error: BaseException, parts: list[str]) -> None:
    # Like traceback.StackSummary.format: a frame repeated more than _REPEATS times in a row (recursion)
    # is printed _REPEATS times, then counted.
    last: tuple[str, int, str] | None = None
    repeated = 0
    for frame, lineno in traceback.walk_tb(error.__traceback__):
        code = frame.f_code
        key = (code.co_filename, lineno, code.co_name)
        if key == last:
            repeated += 1
            if repeated >= _REPEATS:
                continue
        else:
            _repeated(repeated, parts)
            last, repeated = key, 0
        parts.append(f'  File "{key[0]}", line {lineno}, in {key[2]}\n')
        line = linecache.getline(key[0], lineno, frame.f_globals).strip()
        if line:
            parts.append(f"    {line}\n")
    _repeated(repeated, parts)


def _repeated(repeated: int, parts: list[str]) -> None:
    hidden = repeated - _REPEATS + 1
    if hidden > 0:
        parts.append(f"  [Previous line repeated {hidden} more time{'s' if hidden > 1 else ''}]\n")
