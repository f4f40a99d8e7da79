"""A worker tree's health: heartbeat files per worker process, the liveness probe over them
(``python -m worker_health.probe check``), the tree's HTTP endpoint (``/health/live``, ``/health/ready``,
``/metrics``), readiness checks of RabbitMQ and the database (shared with the API) and the schema gate that keeps
consumers paused until the database is at head.

It knows nothing of our actors: the broker module wires it (actors/broker.py). This ``__init__`` imports
nothing, so ``python -m worker_health.probe`` stays light.
"""
