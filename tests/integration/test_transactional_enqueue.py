"""create(..., connection=conn): the job exists only if the caller's transaction commits,
and is picked up right after the commit without waiting for the reconciler."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest

from queue_core import JobNotFound, Queue, keys
from tests.support.aio import mark_index_complete, running, wait_for_status


class Rollback(Exception):
    pass


async def test_job_created_in_a_rolled_back_transaction_never_exists(queue: Queue) -> None:
    created: dict[str, Any] = {}
    with pytest.raises(Rollback):
        async with queue.pool.acquire() as conn, conn.transaction():
            created = await queue.job_service.create("tx", {"n": 1}, connection=conn)
            raise Rollback
    with pytest.raises(JobNotFound):
        await queue.job_service.get(created["id"])
    tx_keys = keys.type_keys(queue.settings.namespace, "tx")
    assert await queue.redis.zcard(tx_keys.ready) == 0
    assert await queue.redis.zcard(tx_keys.scheduled) == 0


async def test_committed_job_is_picked_up_promptly_after_commit(queue: Queue) -> None:
    await mark_index_complete(queue, "tx")
    started: list[float] = []

    async def handler(job: dict[str, Any]) -> dict[str, Any]:
        started.append(time.perf_counter())
        return {}

    runner = queue.runner()
    runner.register_handler("tx", handler)
    async with running(runner):
        await asyncio.sleep(0.3)  # the worker is idle and listening
        async with queue.pool.acquire() as conn:
            async with conn.transaction():
                job = await queue.job_service.create("tx", {"n": 2}, connection=conn)
                await asyncio.sleep(0.3)
                assert not started, "the job ran before its transaction committed"
            committed = time.perf_counter()
        await wait_for_status(queue.job_service, job["id"], {"succeeded"})
    # Well before any reconcile (none runs here) and the idle poll (0.5 s in tests).
    assert started[0] - committed < 0.25


async def test_create_many_in_a_transaction_indexes_every_job_after_commit(queue: Queue) -> None:
    await mark_index_complete(queue, "tx")
    ran: set[str] = set()

    async def handler(job: dict[str, Any]) -> dict[str, Any]:
        ran.add(job["id"])
        return {}

    runner = queue.runner(concurrency=50)
    runner.register_handler("tx", handler)
    async with running(runner):
        async with queue.pool.acquire() as conn, conn.transaction():
            jobs = await queue.job_service.create_many(
                [{"job_type": "tx", "input": {"n": i, "pad": "x" * 50}} for i in range(500)],
                connection=conn,
            )
        for job in jobs:
            await wait_for_status(queue.job_service, job["id"], {"succeeded"})
    assert ran == {j["id"] for j in jobs}


async def test_transactional_enqueue_on_a_callers_connection_finds_the_configured_schema(
    queue: Queue,
) -> None:
    """HYBRIDQ_DB_SCHEMA: the caller's own connection has the server's default search_path,
    not hybridq's schema, and the enqueue must still land in hybridq's table."""
    assert queue.settings.db_schema is not None
    conn = await asyncpg.connect(queue.settings.database_url)
    try:
        path = await conn.fetchval("SHOW search_path")
        assert queue.settings.db_schema not in path
        async with conn.transaction():
            await conn.execute("CREATE TEMP TABLE orders (id int) ON COMMIT DROP")
            await conn.execute("INSERT INTO orders VALUES (42)")
            one = await queue.job_service.create("tx", {"order": 42}, connection=conn)
            many = await queue.job_service.create_many(
                [{"job_type": "tx", "input": {"order": n}} for n in (43, 44)], connection=conn
            )
        assert await conn.fetchval("SHOW search_path") == path  # left as the caller had it
    finally:
        await conn.close()

    for job in [one, *many]:
        stored = await queue.job_service.get(job["id"])
        assert stored["status"] == "queued" and stored["input"] == job["input"]
