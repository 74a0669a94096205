"""`GET /metrics`: Prometheus text format (0.0.4), read from Redis on each scrape.

Gauges (queue depths, registry sizes, live workers) are read from RQ's keys; counters and
histograms from the `postal:metrics:*` hashes that the API and the workers write
(tasks/metrics.py). Everything comes from one pipeline, plus one EXISTS for the workers, so
any API process answers the same and a scrape costs two round trips.
"""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, Response
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from redis import Redis
from rq.utils import as_text
from rq.worker_registration import REDIS_WORKER_KEYS

from tasks import metrics
from web.state import Postal, postal

bp = Blueprint("metrics", __name__)
REGISTRIES = ("started", "failed", "scheduled", "deferred", "finished", "canceled")


def _decode(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {as_text(k): as_text(v) for k, v in raw.items()}


class RedisCollector:
    """A prometheus_client collector over one snapshot of postal's Redis state."""

    def __init__(self, state: Postal) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        redis: Redis = self.state.redis
        queues = list(self.state.queues.values())
        with redis.pipeline(transaction=False) as pipe:
            for queue in queues:
                pipe.llen(queue.key)
                for registry in REGISTRIES:
                    pipe.zcard(getattr(queue, f"{registry}_job_registry").key)
            pipe.hgetall(metrics.COUNTERS_KEY)
            for histogram in metrics.HISTOGRAMS:
                pipe.hgetall(histogram.key)
            pipe.smembers(REDIS_WORKER_KEYS)
            values = iter(pipe.execute())

        depth = GaugeMetricFamily("postal_queue_depth", "Jobs waiting in the queue's list.", labels=["queue"])
        sizes = GaugeMetricFamily(
            "postal_registry_jobs", "Jobs in each of a queue's RQ registries.", labels=["queue", "registry"]
        )
        for queue in queues:
            depth.add_metric([queue.name], int(next(values)))
            for registry in REGISTRIES:
                sizes.add_metric([queue.name, registry], int(next(values)))
        yield depth
        yield sizes
        yield from self._counters(_decode(next(values)))
        for histogram in metrics.HISTOGRAMS:
            yield self._histogram(histogram, _decode(next(values)))
        worker_keys = list(next(values))
        alive = redis.exists(*worker_keys) if worker_keys else 0
        yield GaugeMetricFamily(
            "postal_workers", "Registered workers whose registration has not expired.", value=alive
        )

    @staticmethod
    def _counters(fields: dict[str, str]) -> Iterator[Metric]:
        for name, help_text in metrics.COUNTERS.items():
            family = CounterMetricFamily(f"postal_jobs_{name}", help_text, labels=["task"])
            for field, value in sorted(fields.items()):
                counter, _, task = field.partition("|")
                if counter == name:
                    family.add_metric([task], float(value))
            yield family

    @staticmethod
    def _histogram(histogram: metrics.Histogram, fields: dict[str, str]) -> Metric:
        labels = [histogram.label] if histogram.label else []
        family = HistogramMetricFamily(histogram.name, histogram.help, labels=labels)
        series = sorted({field.rpartition("|")[0] for field in fields})
        for label in series:
            cumulative = 0.0
            buckets = []
            for bound in histogram.buckets:
                cumulative += float(fields.get(f"{label}|{bound!r}", 0))
                buckets.append((repr(float(bound)), cumulative))  # Go-style: 1 -> "1.0"
            buckets.append(("+Inf", float(fields.get(f"{label}|count", 0))))
            family.add_metric(
                [label] if histogram.label else [], buckets, sum_value=float(fields.get(f"{label}|sum", 0))
            )
        return family


@bp.get("/metrics")
def scrape() -> Response:
    """Prometheus scrape endpoint (same auth as the other read routes, see web/auth.py)."""
    body = generate_latest(RedisCollector(postal()))
    return Response(body, status=200, content_type=CONTENT_TYPE_PLAIN_0_0_4)
