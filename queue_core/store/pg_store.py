"""PgStore: the Postgres job store, the only part of the engine that speaks asyncpg.

Every method is one named statement from queries.sql, run inside ``translate_errors``
(connection.py). Batched writes take named records (models.Completion, RetryLater, Failure,
Attempt) and lock their rows in id order, so two of them never deadlock on each other.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg

from queue_core.models import (
    PRIORITY_MIN,
    Attempt,
    Completion,
    Failure,
    IndexEntry,
    Job,
    JobCount,
    JobStatus,
    NewJob,
    Progress,
    RescuedLease,
    RetryLater,
)

from .connection import (
    DEFAULT_ACQUIRE_TIMEOUT_SECONDS,
    TimedPool,
    create_pool,
    open_connection,
    translate_errors,
)
from .periodic_store import PeriodicSchedules
from .queries import Q, in_schema
from .rows import index_entry, job_from_record, new_job_row

_AFTER_EVERY_UUID = uuid.UUID(int=(1 << 128) - 1)
"""The keyset cursor of a first page: greater than every id."""


class PgStore(PeriodicSchedules):
    """Implements ports.JobStore on an asyncpg pool (the periodic schedules' methods come
    from periodic_store.py).

    ``claim_pool``, when given, carries the statements whose loss in a Postgres crash costs
    nothing but a re-run: claims and lease renewals. Its sessions commit with
    ``synchronous_commit = off`` (see docs/design/async-claims.md): a claim lost in a crash
    leaves the job queued, and the worker's later writes for it are fenced out, so the job
    simply runs again (at-least-once, as for any crash). Every other write, and every
    enqueue, waits for the WAL flush.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        claim_pool: asyncpg.Pool | None = None,
        *,
        dsn: str,
        schema: str | None = None,
        acquire_timeout: float = DEFAULT_ACQUIRE_TIMEOUT_SECONDS,
    ) -> None:
        """``dsn`` and ``schema``: for the connections held for long (the reconcile lock,
        LISTEN), opened apart from the pools; ``schema`` is also where the tables are
        (Settings.db_schema) when not on the server's search_path: the pools set their own
        search_path, and statements on a caller's connection name it (see insert_jobs).
        Every statement waits at most ``acquire_timeout`` seconds for a pooled connection
        (then BackendUnavailable)."""
        self.pool = pool
        self.claim_pool = claim_pool or pool
        self._pool = TimedPool(pool, acquire_timeout)
        self._claim_pool = TimedPool(self.claim_pool, acquire_timeout)
        self._dsn = dsn
        self.schema = schema

    async def aclose(self) -> None:
        """Close the pools (a store made by open_lease_store owns its pool)."""
        await self.claim_pool.close()
        if self.pool is not self.claim_pool:
            await self.pool.close()

    async def insert_jobs(
        self, jobs: Sequence[NewJob], connection: asyncpg.Connection | None = None
    ) -> list[Job]:
        """Insert and return the jobs as stored, in the given order. On ``connection`` (the
        caller's, inside its transaction) the statements name the configured schema, so
        the caller need not set search_path."""
        target: asyncpg.Connection | TimedPool = (
            connection if connection is not None else self._pool
        )
        single, batch = Q.insert_job, Q.insert_jobs
        if connection is not None and self.schema is not None:
            single = in_schema("insert_job", self.schema)
            batch = in_schema("insert_jobs", self.schema)
        async with translate_errors():
            if len(jobs) == 1:
                j = jobs[0]
                decided = await target.fetchrow(
                    single,
                    j.id,
                    j.job_type,
                    j.input_json,
                    j.user_id,
                    j.priority,
                    j.max_retries,
                    j.scheduled_for,
                )
            else:
                decided = await target.fetchrow(
                    batch,
                    [j.id for j in jobs],
                    [j.job_type for j in jobs],
                    [j.input_json for j in jobs],
                    [j.user_id for j in jobs],
                    [j.priority for j in jobs],
                    [j.max_retries for j in jobs],
                    [j.scheduled_for for j in jobs],
                )
                assert decided is not None and decided["inserted"] == len(jobs)
        assert decided is not None  # INSERT ... RETURNING always returns the row
        return [new_job_row(j, decided) for j in jobs]

    async def insert_job_once(
        self, job: NewJob, idempotency_key: str, fingerprint: str
    ) -> Job | None:
        """Insert under an idempotency key; None when the owner already used the key."""
        async with translate_errors():
            row = await self._pool.fetchrow(
                Q.insert_job_once,
                job.id,
                job.job_type,
                job.input_json,
                job.user_id,
                job.priority,
                job.max_retries,
                job.scheduled_for,
                idempotency_key,
                fingerprint,
            )
        return job_from_record(row) if row else None

    async def get_job_by_idempotency_key(self, user_id: str | None, key: str) -> Job | None:
        async with translate_errors():
            row = await self._pool.fetchrow(Q.get_job_by_idempotency_key, user_id, key)
        return job_from_record(row) if row else None

    async def list_jobs(
        self,
        *,
        user_id: str | None,
        before: uuid.UUID | None,
        status: str | None,
        job_type: str | None,
        limit: int,
    ) -> list[Job]:
        """Newest first. ``user_id`` None lists every owner's jobs (admin)."""
        before = before or _AFTER_EVERY_UUID
        async with translate_errors():
            if user_id is None:
                rows = await self._pool.fetch(Q.list_all_jobs, before, status, job_type, limit)
            else:
                rows = await self._pool.fetch(
                    Q.list_jobs_of_user, user_id, before, status, job_type, limit
                )
        return [job_from_record(r) for r in rows]

    async def count_jobs(self) -> list[JobCount]:
        async with translate_errors():
            rows = await self._pool.fetch(Q.count_jobs)
        return [JobCount(r["job_type"], r["status"], r["jobs"]) for r in rows]

    async def oldest_due_queued_jobs(self) -> dict[str, datetime]:
        async with translate_errors():
            rows = await self._pool.fetch(Q.oldest_due_queued_jobs)
        return {r["job_type"]: r["oldest_due"] for r in rows}

    async def retry_jobs_in_bulk(
        self, status: str, job_type: str | None, limit: int, finished_by: datetime
    ) -> list[IndexEntry]:
        async with translate_errors():
            rows = await self._pool.fetch(
                Q.retry_jobs_in_bulk, status, job_type, limit, finished_by
            )
        return [index_entry(r) for r in rows]

    async def delete_finished_jobs(
        self,
        *,
        before_id: uuid.UUID,
        finished_before: datetime,
        after_id: uuid.UUID,
        statuses: Sequence[str],
        limit: int,
    ) -> list[uuid.UUID]:
        async with translate_errors():
            rows = await self._pool.fetch(
                Q.delete_finished_jobs,
                before_id,
                finished_before,
                after_id,
                limit,
                list(statuses),
            )
        return sorted(r["id"] for r in rows)

    async def list_failures(self, job_type: str | None, limit: int) -> list[Job]:
        async with translate_errors():
            rows = await self._pool.fetch(Q.list_failures, job_type, limit)
        return [job_from_record(r) for r in rows]

    async def ping(self) -> None:
        async with translate_errors():
            await self._pool.fetchval(Q.ping)

    async def get_job(self, job_id: uuid.UUID) -> Job | None:
        async with translate_errors():
            row = await self._pool.fetchrow(Q.get_job, job_id)
        return job_from_record(row) if row else None

    async def claim_jobs(
        self,
        job_type: str,
        ids: Sequence[uuid.UUID],
        owner: str,
        lease_seconds: float,
        start_now: int | None = None,
    ) -> list[Job]:
        """Claim the ids still queued and due. Those after the first ``start_now`` (default:
        all start now) are claimed ahead, which a job on its last attempt never is."""
        n = len(ids) if start_now is None else start_now
        async with translate_errors():
            rows = await self._claim_pool.fetch(
                Q.claim_jobs, list(ids), owner, lease_seconds, job_type, n
            )
        return [job_from_record(r) for r in rows]

    async def find_queued_jobs(self, ids: Sequence[uuid.UUID]) -> list[IndexEntry]:
        async with translate_errors():
            rows = await self._pool.fetch(Q.find_queued_jobs, list(ids))
        return [index_entry(r) for r in rows]

    async def complete_jobs(self, results: Sequence[Completion]) -> set[uuid.UUID]:
        """Record succeeded attempts (fenced); returns the ids written."""
        results = sorted(results, key=lambda r: r.attempt.id)
        async with translate_errors():
            rows = await self._pool.fetch(
                Q.complete_jobs,
                [r.attempt.id for r in results],
                [r.attempt.attempt for r in results],
                [r.output_json for r in results],
                [r.attempt.owner for r in results],
            )
        return {r["id"] for r in rows}

    async def retry_jobs(self, failures: Sequence[RetryLater]) -> list[IndexEntry]:
        """Queue failed attempts again after their delay (fenced); returns their entries."""
        failures = sorted(failures, key=lambda f: f.attempt.id)
        async with translate_errors():
            rows = await self._pool.fetch(
                Q.retry_jobs,
                [f.attempt.id for f in failures],
                [f.attempt.attempt for f in failures],
                [f.error for f in failures],
                [f.delay_seconds for f in failures],
                [f.attempt.owner for f in failures],
                [f.detail for f in failures],
            )
        return [index_entry(r) for r in rows]

    async def fail_jobs(self, failures: Sequence[Failure]) -> set[uuid.UUID]:
        """Record failed jobs (fenced); returns the ids written."""
        return await self._failures(Q.fail_jobs, failures)

    async def note_errors(self, failures: Sequence[Failure]) -> set[uuid.UUID]:
        """Set the last_error of attempts still running, status unchanged (fenced)."""
        return await self._failures(Q.note_errors, failures)

    async def _failures(self, statement: str, failures: Sequence[Failure]) -> set[uuid.UUID]:
        failures = sorted(failures, key=lambda f: f.attempt.id)
        async with translate_errors():
            rows = await self._pool.fetch(
                statement,
                [f.attempt.id for f in failures],
                [f.attempt.attempt for f in failures],
                [f.error for f in failures],
                [f.attempt.owner for f in failures],
                [f.detail for f in failures],
            )
        return {r["id"] for r in rows}

    async def write_progress(self, updates: Sequence[Progress]) -> set[uuid.UUID]:
        """The latest progress of running attempts (fenced); returns the ids written."""
        updates = sorted(updates, key=lambda u: u.attempt.id)
        async with translate_errors():
            rows = await self._pool.fetch(
                Q.write_progress,
                [u.attempt.id for u in updates],
                [u.attempt.attempt for u in updates],
                [u.attempt.owner for u in updates],
                [u.fraction for u in updates],
                [u.message for u in updates],
            )
        return {r["id"] for r in rows}

    async def extend_leases(
        self, attempts: Sequence[Attempt], lease_seconds: float
    ) -> set[uuid.UUID]:
        attempts = sorted(attempts, key=lambda a: a.id)
        async with translate_errors():
            rows = await self._claim_pool.fetch(
                Q.extend_leases,
                [a.id for a in attempts],
                [a.attempt for a in attempts],
                lease_seconds,
                [a.owner for a in attempts],
            )
        return {r["id"] for r in rows}

    async def extend_worker_leases(self, worker_id: str, lease_seconds: float) -> int:
        """Extend every lease of ``worker_id``'s claims (the lease backstop's statement);
        how many were extended."""
        async with translate_errors():
            rows = await self._claim_pool.fetch(Q.extend_worker_leases, worker_id, lease_seconds)
        return len(rows)

    async def release_jobs(
        self, attempts: Sequence[Attempt], delay_seconds: float = 0.0
    ) -> list[IndexEntry]:
        attempts = sorted(attempts, key=lambda a: a.id)
        async with translate_errors():
            rows = await self._pool.fetch(
                Q.release_jobs,
                [a.id for a in attempts],
                [a.attempt for a in attempts],
                [a.owner for a in attempts],
                delay_seconds,
            )
        return [index_entry(r) for r in rows]

    async def cancel_job(self, job_id: uuid.UUID) -> Job | None:
        async with translate_errors():
            row = await self._pool.fetchrow(Q.cancel_job, job_id)
        return job_from_record(row) if row else None

    async def retry_job(self, job_id: uuid.UUID) -> Job | None:
        async with translate_errors():
            row = await self._pool.fetchrow(Q.retry_job, job_id)
        return job_from_record(row) if row else None

    async def claim_jobs_from_postgres(
        self, job_type: str, limit: int, owner: str, lease_seconds: float
    ) -> list[Job]:
        async with translate_errors():
            rows = await self._claim_pool.fetch(
                Q.claim_jobs_from_postgres, job_type, limit, owner, lease_seconds
            )
        jobs = [job_from_record(r) for r in rows]
        jobs.sort(key=lambda j: (-j["priority"], j["scheduled_for"], j["id"]))
        return jobs

    async def rescue_expired_leases(
        self, limit: int, backoff_base: float, backoff_cap: float
    ) -> list[RescuedLease]:
        """One page of expired leases rescued: each job's entry and its new status."""
        async with translate_errors():
            rows = await self._pool.fetch(Q.rescue_expired_leases, limit, backoff_base, backoff_cap)
        return [RescuedLease(index_entry(r), JobStatus(r["status"]), r["user_id"]) for r in rows]

    async def queued_job_types(self) -> list[str]:
        async with translate_errors():
            rows = await self._pool.fetch(Q.queued_job_types)
        return [r["job_type"] for r in rows]

    async def queued_jobs_page(
        self, job_type: str, after: IndexEntry | None, limit: int
    ) -> list[IndexEntry]:
        """A type's queued jobs in claim order, ``limit`` at a time: pass the last entry
        of the previous page as ``after`` (None for the first page)."""
        cursor = (
            (-after.priority, after.scheduled_for, after.id)
            if after is not None
            else (PRIORITY_MIN - 1, datetime.min.replace(tzinfo=UTC), uuid.UUID(int=0))
        )
        async with translate_errors():
            rows = await self._pool.fetch(Q.queued_jobs_page, job_type, *cursor, limit)
        return [index_entry(r) for r in rows]

    @asynccontextmanager
    async def reconcile_lock(self) -> AsyncIterator[bool]:
        """Hold the reconcile advisory lock for the block, on a connection of its own (the
        pass's statements need the pool meanwhile); yields False (and holds nothing) when
        another process has it. Closing the connection releases the lock."""
        conn = await self._dedicated_connection()
        try:
            async with translate_errors():
                acquired = bool(await conn.fetchval(Q.try_reconcile_lock))
            yield acquired
        finally:
            await _close(conn)

    async def notify(self, connection: asyncpg.Connection, channel: str, payload: str) -> None:
        """pg_notify on the caller's connection: delivered only if its transaction commits."""
        async with translate_errors():
            await connection.execute(Q.notify, channel, payload)

    @asynccontextmanager
    async def listening(
        self, channel: str, callback: Callable[..., None]
    ) -> AsyncIterator[Callable[[], bool]]:
        """LISTEN on a connection of its own for the block; yields a function telling whether
        that connection has been closed (then the caller should listen again)."""
        conn = await self._dedicated_connection()
        try:
            async with translate_errors():
                await conn.add_listener(channel, callback)
            yield conn.is_closed
        finally:
            await _close(conn)

    async def _dedicated_connection(self) -> asyncpg.Connection:
        return await open_connection(self._dsn, schema=self.schema)

    async def server_now(self) -> datetime:
        async with translate_errors():
            value: datetime = await self._pool.fetchval(Q.server_now)
        return value

    async def server_time_ms(self) -> float:
        async with translate_errors():
            value = await self._pool.fetchval(Q.server_time_ms)
        return float(value)


async def _close(conn: asyncpg.Connection) -> None:
    """Close a connection of our own; one already broken is simply dropped."""
    try:
        await conn.close(timeout=5)
    except Exception:  # a dead connection cannot hold a lock or a LISTEN any more
        conn.terminate()


async def open_lease_store(dsn: str, schema: str | None = None) -> PgStore:
    """A store on a one-connection pool of its own, for a worker's lease keeper: its own
    thread and event loop, so its renewals never wait behind the worker's statements (or
    its blocked loop). Close it with ``aclose()``."""
    pool = await create_pool(dsn, schema=schema, min_size=1, max_size=1)
    return PgStore(pool, dsn=dsn, schema=schema)
