"""Operations on a running deployment's queues that the CLI, the API or a test can call without click.

Modules: ``dead_letter`` (one dead-lettered message, decoded), ``dead_letter_queue`` (read and purge
``<queue>.XQ``, leaving what is read in place), ``replay`` (dead letters back to their queues in new, linked
traces), ``trace_removal`` (the messages of some traces deleted from queues, all others put back).
Import from the modules directly: this package imports nothing, so ``tracedq --help`` stays fast.
"""

__all__: list[str] = []
