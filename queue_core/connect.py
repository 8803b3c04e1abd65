"""``connect()``: open the backends once and hand out the services built on them.

async with queue_core.connect(settings, handlers="myapp.jobs") as queue:
    await queue.job_service.create(job_type="email_processing", input={...})
    runner = queue.runner(concurrency=20)
    handlers.register(runner)
    await runner.run()

This is where the engine's parts are wired together, and the only place that knows which
implementation stands behind each port.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from .contracts import ContractRegistry, UndeclaredContracts, load_contracts
from .enqueue.committed_jobs import index_committed_jobs
from .enqueue.service import JobService
from .index import IndexRepair, RedisClient, RedisIndex, create_client
from .index.events import EventHub, EventPublisher
from .maintenance.reconciler import Reconciler
from .maintenance.scheduler import PeriodicScheduler
from .periodic import PeriodicJob
from .settings import Settings
from .store import PgStore, Pool, create_pool, open_lease_store
from .telemetry.metrics import Metrics
from .worker.runner import JobRunnerService

CLAIM_POOL_SIZE = 3
"""Connections for claims and heartbeats: a worker has at most one claim in flight."""


@dataclass
class Queue:
    """The connected backends and the services on them. ``pool`` and ``redis`` are the raw
    clients, for tests and tools; application code needs only the services."""

    settings: Settings
    store: PgStore
    index: RedisIndex
    job_service: JobService
    events: EventPublisher
    hub: EventHub
    metrics: Metrics | None = None

    @property
    def pool(self) -> Pool:
        return self.store.pool

    @property
    def redis(self) -> RedisClient:
        return self.index.client

    def runner(self, settings: Settings | None = None, **options: Any) -> JobRunnerService:
        """A worker on these backends, with ``settings`` (default: the queue's; its
        database_url and db_schema must stay those of the backends); ``options`` are
        JobRunnerService's keywords (concurrency, worker_id, clock)."""
        settings = settings or self.settings
        options.setdefault(
            "lease_store", partial(open_lease_store, settings.database_url, settings.db_schema)
        )
        options.setdefault("rebuild_index", self._rebuild_index)
        options.setdefault("metrics", self.metrics)
        options.setdefault("events", self.events)
        options.setdefault(
            "index_committed_jobs",
            partial(index_committed_jobs, self.store, self.index, self.settings.namespace),
        )
        return JobRunnerService(self.store, self.index, settings, **options)

    def reconciler(self, periodic: Sequence[PeriodicJob] = ()) -> Reconciler:
        """A reconciler on these backends; ``periodic``: the periodic jobs it enqueues."""
        return Reconciler(
            self.store,
            self.index,
            IndexRepair(self.index),
            self.settings,
            metrics=self.metrics,
            scheduler=(
                PeriodicScheduler(self.store, self.index, periodic, self.metrics)
                if periodic
                else None
            ),
            events=self.events,
        )

    async def _rebuild_index(self, job_types: list[str]) -> bool:
        """What a worker runs when it finds a type's index lost; False when another process
        holds the reconcile lock (it is rebuilding, or about to)."""
        return not (await self.reconciler().rebuild_index(job_types)).skipped


def producer_contracts(
    settings: Settings,
    *,
    handlers: str | None = None,
    validate: bool = True,
    contracts: ContractRegistry | None = None,
) -> ContractRegistry | None:
    """What a JobService validates create() against: ``contracts`` when given; else the job
    types of the ``handlers`` module (default: Settings.handlers_module); None (nothing is
    checked) only with ``validate=False``. With no module known, an UndeclaredContracts:
    every create() raises HandlerNotFound saying how to name one. Raises HandlerNotFound
    when the module cannot be loaded."""
    if contracts is not None:
        return contracts
    if not validate:
        return None
    module = handlers or settings.handlers_module
    return load_contracts(module) if module else UndeclaredContracts()


@asynccontextmanager
async def connect(
    settings: Settings | None = None,
    metrics: Metrics | None = None,
    *,
    handlers: str | None = None,
    validate: bool = True,
    contracts: ContractRegistry | None = None,
) -> AsyncIterator[Queue]:
    """Open the pools and the Redis client (closed when the block exits). ``metrics``, when
    given, is recorded into by every service handed out.

    The JobService validates what it creates against the application's job types, so that
    a typo'd type or input its model rejects raises InvalidJob before anything is written:
    those of the ``handlers`` module (a module name, e.g. "myapp.jobs"; default:
    Settings.handlers_module, i.e. HYBRIDQ_HANDLERS_MODULE) or of ``contracts``. A producer
    that deliberately enqueues without them says ``validate=False``; with none of these,
    create() raises HandlerNotFound (workers, operator tools and the reconciler, which
    create nothing, need no module here).

    Raises HandlerNotFound when the handlers module cannot be loaded, BackendUnavailable
    when Postgres cannot be reached and pool_min_size > 0."""
    settings = settings or Settings()
    contracts = producer_contracts(
        settings, handlers=handlers, validate=validate, contracts=contracts
    )
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
    store = PgStore(
        pool,
        claim_pool,
        dsn=settings.database_url,
        schema=settings.db_schema,
        acquire_timeout=settings.pool_acquire_timeout_seconds,
    )
    index = RedisIndex(client, settings.namespace)
    events = EventPublisher(client, settings.namespace, enabled=settings.events)
    hub = EventHub(client)
    service = JobService(
        store, index, contracts, metrics, events=events, follower=hub if settings.events else None
    )
    try:
        yield Queue(settings, store, index, service, events, hub, metrics)
    finally:
        await service.aclose()  # the jobs created are committed; index them if we can
        await events.aclose()
        await hub.aclose()
        await client.aclose()
        await store.aclose()
