"""The local trace store ``tracedq dev``'s collector writes and ``tracedq trace ...`` reads.

Modules: ``store`` (SQLite, bounded), ``database`` (its file: tables, version, transactions), ``records``
(what a log record keeps; conversions from OTLP), ``flow`` (a trace's summary and its flow's outcome),
``completion`` (when ``trace tail`` prints a trace), ``outcomes`` and ``defaults`` (constants the CLI reads
without loading the rest). Import from them directly: this package imports nothing, so ``tracedq --help`` stays fast.
"""

__all__: list[str] = []
