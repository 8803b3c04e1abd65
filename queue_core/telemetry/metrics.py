"""Prometheus metrics. One ``Metrics`` object per process, built at the edge (CLI, API app)
and passed down; its own registry, so tests and several apps in one process never share
counters. Everything that records a metric accepts ``metrics=None`` and then records nothing.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import start_http_server as _start_http_server

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.enqueued = Counter("hybridq_jobs_enqueued", "Jobs created.", ["job_type"], registry=r)
        self.claimed = Counter(
            "hybridq_jobs_claimed",
            "Attempts started, by where the claim came from.",
            ["job_type", "source"],
            registry=r,
        )
        self.succeeded = Counter(
            "hybridq_jobs_succeeded", "Attempts that succeeded.", ["job_type"], registry=r
        )
        self.retried = Counter(
            "hybridq_jobs_retried", "Failed attempts queued for a retry.", ["job_type"], registry=r
        )
        self.failed = Counter(
            "hybridq_jobs_failed", "Jobs that failed for good.", ["job_type"], registry=r
        )
        self.leases_lost = Counter(
            "hybridq_leases_lost",
            "Attempts whose lease was lost (result discarded or handler cancelled).",
            ["job_type"],
            registry=r,
        )
        self.handler_seconds = Histogram(
            "hybridq_handler_duration_seconds",
            "Handler run time per attempt.",
            ["job_type"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.enqueue_to_start_seconds = Histogram(
            "hybridq_enqueue_to_start_seconds",
            "From when a job was due (created, or scheduled_for) to its attempt's start.",
            ["job_type"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "hybridq_queue_depth", "Jobs by type and status.", ["job_type", "status"], registry=r
        )
        self.index_depth = Gauge(
            "hybridq_index_depth", "Ids in the Redis index.", ["job_type", "set"], registry=r
        )
        self.queued_without_worker = Gauge(
            "hybridq_queued_without_worker",
            "Queued jobs of a type no live worker has registered: they wait until one does "
            "(a typo'd type, a handlers module not deployed yet, a worker pool that is down).",
            ["job_type"],
            registry=r,
        )
        self.redis_fallback = Gauge(
            "hybridq_redis_fallback",
            "1 while this worker claims the type from Postgres "
            "(Redis unreachable or its index being rebuilt).",
            ["job_type"],
            registry=r,
        )
        self.reconciler_repairs = Counter(
            "hybridq_reconciler_repairs",
            "Repairs made by the reconciler, by kind.",
            ["kind"],
            registry=r,
        )

    def render(self) -> bytes:
        """The text exposition format, for a /metrics route."""
        return generate_latest(self.registry)

    def serve(self, port: int, host: str = "0.0.0.0") -> None:
        """Expose /metrics on ``port`` from a background thread (workers, reconciler)."""
        _start_http_server(port, addr=host, registry=self.registry)
