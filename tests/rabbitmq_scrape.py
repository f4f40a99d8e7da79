"""Reading what a RabbitMQ node's ``rabbitmq_prometheus`` serves: the family names and samples of a page.

The metric names RabbitMQ emits are read from the ``# TYPE`` lines: ``scraped_metric_names(node)``.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.environment.rabbitmq_node import RabbitmqNode

__all__ = ["DETAILED_QUEUE_PATH", "SCRAPED_PATHS", "family_names", "samples", "scraped_metric_names"]

# The per-queue depth and consumer families the Prometheus ``rabbitmq-queues`` scrape job asks for.
DETAILED_QUEUE_PATH = "/metrics/detailed?family=queue_coarse_metrics&family=queue_consumer_count"
SCRAPED_PATHS = ("/metrics", DETAILED_QUEUE_PATH)


def family_names(exposition: str) -> set[str]:
    """Every metric family a page declares (its ``# TYPE`` lines), including families with no sample yet.

    Names are as written (counters keep ``_total``); histograms and summaries add ``_bucket``/``_sum``/``_count``
    to their samples.
    """
    return {line.split()[2] for line in exposition.splitlines() if line.startswith("# TYPE ")}


def samples(exposition: str) -> list[Sample]:
    """Every sample of a page, with its labels."""
    return [sample for family in text_string_to_metric_families(exposition) for sample in family.samples]


def scraped_metric_names(node: RabbitmqNode) -> set[str]:
    """Every metric family name of ``/metrics`` and of the per-queue detailed page (``DETAILED_QUEUE_PATH``)."""
    return set().union(*(family_names(node.scrape(path)) for path in SCRAPED_PATHS))
