"""Every process's output merged into ours, line by line, each behind its name: coloured on a TTY, plain otherwise."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import IO, Final

__all__ = ["Output"]

_COLOURS: Final = (36, 32, 33, 35, 34, 91, 92, 93)  # cyan, green, yellow, magenta, blue, bright red/green/yellow
_OWN: Final = "dev"


class Output:
    """Writes ``name | line`` to ``stream``, one whole line at a time, whatever thread calls.

    Args:
        stream: where lines go (our stdout).
        names: every prefix that will be used, so they align and keep one colour each.
        colour: ANSI colours on the prefixes.
    """

    def __init__(self, stream: IO[str], names: Iterable[str], *, colour: bool) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._broken = False
        all_names = [_OWN, *names]
        self._width = max(len(name) for name in all_names)
        self._prefix = {}
        for index, name in enumerate(all_names):
            text = f"{name:<{self._width}} | "
            bold = "1;" if name == _OWN else ""
            code = _COLOURS[index % len(_COLOURS)] if name != _OWN else 37
            self._prefix[name] = f"\033[{bold}{code}m{text}\033[0m" if colour else text

    def line(self, name: str, text: str) -> None:
        prefix = self._prefix.get(name) or f"{name:<{self._width}} | "
        with self._lock:
            if self._broken:
                return
            try:
                self._stream.write(prefix + text.rstrip("\r\n") + "\n")
                self._stream.flush()
            except OSError:  # our reader went away (`| head`, a closed terminal): the services keep running
                self._broken = True

    def say(self, text: str) -> None:
        """A line of ``tracedq dev``'s own."""
        self.line(_OWN, text)

    def pump(self, name: str, pipe: IO[bytes]) -> threading.Thread:
        """Copy ``pipe`` line by line until it closes, in a thread of its own (returned, started)."""

        def run() -> None:
            with pipe:
                for raw in iter(pipe.readline, b""):
                    self.line(name, raw.decode("utf-8", errors="replace"))

        thread = threading.Thread(target=run, name=f"output-{name}", daemon=True)
        thread.start()
        return thread
