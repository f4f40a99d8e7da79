"""Operations on a running deployment that the CLI, the API or a test can call without click.

Today: reading, replaying and purging RabbitMQ dead-letter queues (:mod:`operations.dead_letters`).
Import from the modules directly: this package imports nothing, so ``tracedq --help`` stays fast.
"""

__all__: list[str] = []
