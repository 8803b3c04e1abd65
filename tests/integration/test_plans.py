"""The hot statements stay O(log n) at a 1M-job backlog, with fresh statistics and with the
stale ones a queue table usually has (bulk enqueue outruns autovacuum's ANALYZE)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from queue_core import Queue
from queue_core.store.queries import Q

BACKLOG = 1_000_000
RUNNING = 2_000

FILL = """
INSERT INTO jobs (id, job_type, input, status, scheduled_for, lease_owner, lease_expires_at,
                  attempts)
SELECT gen_random_uuid(), 'bulk', '{}'::jsonb,
       CASE WHEN g <= $2 THEN 'running' ELSE 'queued' END,
       now() - interval '1 minute',
       CASE WHEN g <= $2 THEN 'w' END,
       CASE WHEN g <= $2 THEN now() + interval '1 minute' END,
       CASE WHEN g <= $2 THEN 1 ELSE 0 END
FROM generate_series(1, $1) AS g
"""


@pytest.fixture
async def backlog(queue: Queue) -> tuple[Queue, list[uuid.UUID], list[uuid.UUID]]:
    async with queue.pool.acquire() as conn:
        await conn.execute(FILL, BACKLOG, RUNNING)
        running = [r["id"] for r in await conn.fetch(
            "SELECT id FROM jobs WHERE status = 'running' LIMIT 100")]
        queued = [r["id"] for r in await conn.fetch(
            "SELECT id FROM jobs WHERE status = 'queued' LIMIT 100")]
    return queue, queued, running


def hot_statements(queued: list[uuid.UUID], running: list[uuid.UUID]) -> dict[str, tuple[Any, ...]]:
    n = len(running)
    return {
        "claim_jobs": (queued, "w2", 30.0, "bulk", 10),
        "find_queued_jobs": (queued,),
        "complete_jobs": (running, [1] * n, [None] * n, ["w"] * n),
        "fail_jobs": (running, [1] * n, ["e"] * n, ["w"] * n, [None] * n),
        "note_errors": (running, [1] * n, ["e"] * n, ["w"] * n, [None] * n),
        "retry_jobs": (running, [1] * n, ["e"] * n, [1.0] * n, ["w"] * n, [None] * n),
        "extend_leases": (running, [1] * n, 30.0, ["w"] * n),
        "release_jobs": (running, [1] * n, ["w"] * n, 0.0),
        "get_job": (queued[0],),
    }


async def plan_of(queue: Queue, name: str, args: tuple[Any, ...]) -> str:
    async with queue.pool.acquire() as conn:
        async with conn.transaction():  # EXPLAIN ANALYZE runs the write: roll it back
            rows = await conn.fetch("EXPLAIN (ANALYZE, COSTS OFF) " + getattr(Q, name), *args)
            plan = "\n".join(r[0] for r in rows)
            raise _Rollback(plan)


class _Rollback(Exception):
    pass


async def explain(queue: Queue, name: str, args: tuple[Any, ...]) -> str:
    try:
        await plan_of(queue, name, args)
    except _Rollback as done:
        return str(done)
    raise AssertionError("unreachable")


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("statistics", ["stale", "fresh"])
async def test_hot_statements_use_the_primary_key_at_a_1m_backlog(
    backlog: tuple[Queue, list[uuid.UUID], list[uuid.UUID]], statistics: str
) -> None:
    queue, queued, running = backlog
    if statistics == "fresh":
        await queue.pool.execute("ANALYZE jobs")
    for name, args in hot_statements(queued, running).items():
        plan = await explain(queue, name, args)
        assert "jobs_pkey" in plan, f"{name} ({statistics} statistics):\n{plan}"
        assert "Seq Scan on jobs" not in plan, f"{name}:\n{plan}"
        assert "jobs_queued" not in plan, f"{name} scans a queued index:\n{plan}"


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_fallback_claim_and_lease_rescue_use_their_partial_indexes_at_a_1m_backlog(
    backlog: tuple[Queue, list[uuid.UUID], list[uuid.UUID]],
) -> None:
    queue, _, _ = backlog
    await queue.pool.execute("ANALYZE jobs")
    claim = await explain(queue, "claim_jobs_from_postgres", ("bulk", 10, "w3", 30.0))
    assert "jobs_queued_idx" in claim, claim
    rescue = await explain(queue, "rescue_expired_leases", (100, 1.0, 60.0))
    assert "jobs_running_lease_idx" in rescue, rescue
    start = (-1001, datetime.min.replace(tzinfo=UTC), uuid.UUID(int=0))
    page = await explain(queue, "queued_jobs_page", ("bulk", *start, 1000))
    assert "jobs_queued_idx" in page, page
    assert "Index Cond" in page and "Sort" not in page, page  # a range scan, in order
    middle = await queue.pool.fetchrow(
        "SELECT priority, scheduled_for, id FROM jobs WHERE status = 'queued' "
        "ORDER BY -priority, scheduled_for, id OFFSET 500000 LIMIT 1")
    cursor = (-middle["priority"], middle["scheduled_for"], middle["id"])
    later = await explain(queue, "queued_jobs_page", ("bulk", *cursor, 1000))
    assert "jobs_queued_idx" in later and "Sort" not in later, later
    newest = uuid.UUID(int=2**128 - 1)
    listing = await explain(queue, "list_jobs_of_user", ("u1", newest, None, None, 50))
    assert "jobs_owned_by_user_idx" in listing, listing
