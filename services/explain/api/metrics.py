"""Prometheus families read from Redis at scrape time: queue depth, live workers, job durations, failures.

Workers measure and the API reports, so the numbers live in Redis (see ../redis_store.py), not in one process's
memory. A scrape while Redis is down still answers, with ``diseaseid_explain_redis_up 0``.
"""
from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from rq import Queue

from services.explain.liveness import alive_workers
from services.explain.redis_store import DURATION_BUCKETS, ExplainStore, bucket_label

log = logging.getLogger("services.explain.api.metrics")
NS = "diseaseid_explain"


class QueueCollector(Collector):
    def __init__(self, queue: Queue, store: ExplainStore, fresh_s: float):
        self.queue = queue
        self.store = store
        self.fresh_s = fresh_s

    def collect(self):
        up = GaugeMetricFamily(f"{NS}_redis_up", "1 when the API reaches Redis")
        try:
            families = list(self._from_redis())
        except RedisError as exc:
            log.warning("metrics: Redis unreachable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _from_redis(self):
        q = self.queue
        depth = GaugeMetricFamily(f"{NS}_jobs", "Explain jobs by state (queued is the queue depth)",
                                  labels=["state"])
        depth.add_metric(["queued"], q.count)
        depth.add_metric(["started"], q.started_job_registry.count)
        depth.add_metric(["finished"], q.finished_job_registry.count)
        depth.add_metric(["failed"], q.failed_job_registry.count)
        yield depth

        workers = GaugeMetricFamily(f"{NS}_workers_alive", "Workers heard from within the worker TTL")
        workers.add_metric([], len(alive_workers(q, self.fresh_s)))
        yield workers

        hist = HistogramMetricFamily(f"{NS}_job_duration_seconds",
                                     "Worker time per job by stage (predict, explain, render, total)",
                                     labels=["stage"])
        for stage, fields in sorted(self.store.durations().items()):
            # Buckets below the fastest observation were never written: they count zero.
            buckets = [(label, fields.get(label, 0.0)) for label in map(bucket_label, DURATION_BUCKETS)]
            hist.add_metric([stage], buckets, sum_value=fields.get("sum", 0.0))
        yield hist

        failures = CounterMetricFamily(f"{NS}_job_failures",
                                       "Failed job attempts by kind (permanent: bad input or timeout; "
                                       "transient: retried; abandoned: the worker died)",
                                       labels=["kind"])
        counts = self.store.counts()
        for kind in ("permanent", "transient", "abandoned"):
            failures.add_metric([kind], counts.get(f"failures_{kind}", 0))
        yield failures


class RequestMetrics:
    """Counted in the API process: how POST /explain requests ended."""

    def __init__(self, registry: CollectorRegistry):
        self.submitted = Counter(f"{NS}_requests", "Accepted POST /explain requests by outcome",
                                 ["outcome"], registry=registry)
