"""A driver error that is not a lost connection aborts one of a worker's statements: the
worker must treat it as transient, like a dropped connection, and keep going.

Two such errors, both seen in the chaos tests of this folder:
- asyncpg.DeadlockDetectedError (SQLSTATE 40P01). In test_sigterm_mid_run_finishes_or_
  releases_in_flight_jobs, one worker with 200 slots deadlocked with itself: its outcome flush
  (complete_jobs) against its heartbeat (extend_leases), which lock the same rows in
  different orders. Server log: "ERROR: deadlock detected ... Process A: UPDATE jobs AS j
  SET status = 'succeeded' ... Process B: UPDATE jobs AS j SET lease_expires_at = ...".
- asyncpg.InternalClientError "cannot switch to state 12; another operation (2) is in
  progress": what asyncpg raises (about half the time) when a pooled connection is used
  right after the server terminated it (pg_terminate_backend, a restart); see
  MagicStack/asyncpg#1069. It stalled test_postgres_backends_terminated_mid_run_loses_no_job.
PgStore used to translate neither into BackendUnavailable, the runner's background loops
caught nothing else, and the loop task ended without a log line (fixed: both are retryable
now, and every background loop logs and carries on). A dead outcome flush: the worker
wrote no result any more, its heartbeat keeps every lease alive so the reconciler never
rescues them, and its jobs stay 'running' until the process is stopped (704 of 2,000 after
150 s in the first case, 2,010 of 5,000 in the second). A dead heartbeat: every job that
outlives its lease is rescued and runs again.

The runner-level tests inject the error deterministically (the store raises what PgStore
raises when Postgres picks that statement); the store-level test terminates a real
connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from queue_core import BackendUnavailable, JobRunnerService, Queue
from queue_core.store.pg_store import PgStore, translate_errors
from tests.support.aio import mark_index_complete, running, wait_until
from tests.support.fleet import short_lease
from tests.support.workers import lease_store_for

JOB_TYPE = "driver_error"
DRIVER_ERRORS: dict[str, Callable[[], Exception]] = {
    "deadlock": lambda: asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
    "terminated_connection": lambda: asyncpg.InternalClientError(
        "cannot switch to state 12; another operation (2) is in progress"
    ),
}


class FailingOnceStore:
    """The worker's store, except that the first call of ``method`` fails with ``error``,
    raised through PgStore's own translation (so exactly what PgStore would raise)."""

    def __init__(self, store: PgStore, method: str, error: Exception | None) -> None:
        self._store = store
        self._method = method
        self._error: Exception | None = error
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name != self._method:
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self._error is not None:
                error, self._error = self._error, None
                async with translate_errors():
                    raise error
            return await attr(*args, **kwargs)

        return call


def _runner(
    queue: Queue,
    store: Any,
    handler: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
    lease_store: Any = None,
) -> JobRunnerService:
    settings = short_lease(queue.settings)
    runner = JobRunnerService(
        store,
        queue.index,
        settings,
        lease_store=lease_store or lease_store_for(settings),
        concurrency=5,
    )
    runner.register_handler(JOB_TYPE, handler)
    return runner


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("error", sorted(DRIVER_ERRORS))
async def test_outcomes_are_written_after_a_driver_error_aborts_one_flush(
    queue: Queue, error: str
) -> None:
    await queue.job_service.create_many(
        [{"job_type": JOB_TYPE, "input": {"n": n}} for n in range(20)]
    )
    await mark_index_complete(queue, JOB_TYPE)

    async def quick(job: dict[str, Any]) -> dict[str, Any]:
        return {"n": job["input"]["n"]}

    store = FailingOnceStore(queue.store, "complete_jobs", DRIVER_ERRORS[error]())
    async with running(_runner(queue, store, quick)):

        async def all_succeeded() -> bool:
            n = await queue.pool.fetchval("SELECT count(*) FROM jobs WHERE status = 'succeeded'")
            return int(n) == 20

        # While the worker keeps running, not only once it is stopped (its final flush).
        await wait_until(all_succeeded, timeout=10)


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("error", sorted(DRIVER_ERRORS))
async def test_heartbeats_go_on_after_a_driver_error_aborts_one(queue: Queue, error: str) -> None:
    job = await queue.job_service.create(JOB_TYPE, {"n": 1})
    await mark_index_complete(queue, JOB_TYPE)
    started, finish = asyncio.Event(), asyncio.Event()

    async def long_running(job: dict[str, Any]) -> dict[str, Any]:
        started.set()
        await finish.wait()
        return {"done": True}

    failing: list[FailingOnceStore] = []

    def wrap(lease_store: PgStore) -> FailingOnceStore:
        # The keeper opens its store again after an error: only the first one fails.
        store = FailingOnceStore(lease_store, "extend_leases", DRIVER_ERRORS[error]())
        if failing:
            store = FailingOnceStore(lease_store, "extend_leases", None)
        failing.append(store)
        return store

    settings = short_lease(queue.settings)
    runner = _runner(queue, queue.store, long_running, lease_store_for(settings, wrap))
    async with running(runner):
        await asyncio.wait_for(started.wait(), 10)

        async def beating_again() -> bool:
            # one aborted renewal, then the next ones (every 2/3 s)
            return sum(s.calls for s in failing) >= 3

        try:
            # Without heartbeats the lease (2 s) expires and the job runs a second time.
            await wait_until(beating_again, timeout=5, interval=0.05)
        finally:
            finish.set()
        current = await queue.job_service.get(job["id"])
        assert current["status"] == "running"
        assert current["lease_owner"].startswith(runner.worker_id + "/")  # one claim of it


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_a_connection_terminated_under_the_store_is_reported_as_backend_unavailable(
    queue: Queue,
) -> None:
    """The store's next statement on a connection the server just terminated either runs
    (on a fresh connection) or raises BackendUnavailable, never a raw driver error. Twenty
    tries: asyncpg's race loses about one in two."""
    killer = await asyncpg.connect(queue.settings.database_url)
    seen: dict[str, int] = {}
    try:
        for _ in range(20):
            async with queue.pool.acquire() as conn:  # the pool hands this one out next
                pid = conn.get_server_pid()
            await killer.fetchval("SELECT pg_terminate_backend($1)", pid)
            try:
                await queue.store.server_time_ms()
                outcome = "ok"
            except BackendUnavailable:
                outcome = "BackendUnavailable"
            except Exception as exc:  # the bug: a driver error escapes the store
                outcome = type(exc).__name__
            seen[outcome] = seen.get(outcome, 0) + 1
    finally:
        await killer.close()
    assert seen.keys() <= {"ok", "BackendUnavailable"}, seen
