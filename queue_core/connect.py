"""Open the backends once and hand out the services built on them.

async with queue_core.connect(settings) as queue:
    await queue.job_service.create(job_type="email_processing", input={...})
    runner = queue.runner(concurrency=20)
    handlers.register(runner)
    await runner.run()
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from queue_core.enqueue.committed_jobs import index_committed_jobs
from queue_core.enqueue.service import JobService
from queue_core.index.redis_index import RedisIndex, create_client
from queue_core.maintenance.reconciler import Reconciler
from queue_core.store.pg_store import PgStore, create_pool
from queue_core.telemetry.metrics import Metrics
from queue_core.worker.runner import JobRunnerService

from .periodic import PeriodicJob
from .settings import Settings

CLAIM_POOL_SIZE = 3
"""Connections for claims and heartbeats: a worker has at most one claim in flight."""


@dataclass
class Queue:
    settings: Settings
    pool: asyncpg.Pool
    redis: aioredis.Redis
    store: PgStore
    index: RedisIndex
    job_service: JobService
    metrics: Metrics | None = None

    def runner(self, **options: Any) -> JobRunnerService:
        """A worker on these backends; ``options`` are JobRunnerService's keywords
        (concurrency, worker_id)."""
        options.setdefault("rebuild_index", self.reconciler().rebuild_index)
        options.setdefault("metrics", self.metrics)
        options.setdefault(
            "index_committed_jobs",
            partial(index_committed_jobs, self.store, self.index, self.settings.namespace),
        )
        return JobRunnerService(self.store, self.index, self.settings, **options)

    def reconciler(self, periodic: Sequence[PeriodicJob] = ()) -> Reconciler:
        """A reconciler on these backends; ``periodic``: the periodic jobs it enqueues."""
        return Reconciler(
            self.store,
            self.index,
            self.settings,
            metrics=self.metrics,
            service=self.job_service,
            periodic=periodic,
        )


@asynccontextmanager
async def connect(
    settings: Settings | None = None, metrics: Metrics | None = None
) -> AsyncIterator[Queue]:
    """Open the pools and the Redis client; ``metrics``, when given, is recorded into by
    every service handed out."""
    settings = settings or Settings()
    pool = await create_pool(
        settings.database_url,
        schema=settings.db_schema,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
    )
    # Claims and lease renewals only; opens connections only once a worker claims.
    claim_pool = await create_pool(
        settings.database_url,
        schema=settings.db_schema,
        min_size=0,
        max_size=CLAIM_POOL_SIZE,
        synchronous_commit=False,
    )
    client = create_client(settings.redis_url)
    store = PgStore(pool, claim_pool)
    index = RedisIndex(client, settings.namespace)
    service = JobService(store, index, metrics=metrics)
    try:
        yield Queue(settings, pool, client, store, index, service, metrics)
    finally:
        await service.aclose()  # the jobs created are committed; index them if we can
        await client.aclose()
        await claim_pool.close()
        await pool.close()
