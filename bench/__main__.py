"""``python -m bench``: the whole benchmark suite (``bench/suite.py``)."""

from __future__ import annotations

from bench.suite import main

main()
