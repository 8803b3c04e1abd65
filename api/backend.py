"""What the API's routes use: opened by the app's lifespan, closed with it."""

from __future__ import annotations

from dataclasses import dataclass

from queue_core import JobService
from queue_core.index.redis_index import RedisIndex
from queue_core.store.pg_store import PgStore
from queue_core.telemetry.metrics import Metrics

from .limits import RateLimiter


@dataclass(frozen=True)
class ApiBackend:
    service: JobService
    store: PgStore
    index: RedisIndex
    limiter: RateLimiter
    metrics: Metrics
