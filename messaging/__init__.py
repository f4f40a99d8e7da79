"""Our RabbitMQ plumbing for Dramatiq: the broker class (:class:`messaging.broker.TracedqBroker`), the consumer every
queue is read through, dead letters that carry their reason, parking of long delays, broadcast queues.

It knows nothing of our actors: any Dramatiq project can build a :class:`~messaging.broker.TracedqBroker`. This
``__init__`` imports nothing, so ``messaging.dead_lettering`` (read by ``tracedq dlq``) loads without pika's broker.
"""
