"""What the API's routes use: opened by the app's lifespan, closed with it."""

from __future__ import annotations

from dataclasses import dataclass

from queue_core import JobService
from queue_core.index import RateLimiter
from queue_core.ports import JobStore, ReadyIndex, SessionStore
from queue_core.telemetry.metrics import Metrics


@dataclass(frozen=True)
class ApiBackend:
    service: JobService
    store: JobStore
    index: ReadyIndex
    limiter: RateLimiter
    sessions: SessionStore
    metrics: Metrics
