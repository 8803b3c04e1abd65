"""Retention: finished jobs past their age are deleted in bounded batches; nothing younger
than the cut-off, and nothing unfinished, ever is."""

from __future__ import annotations

import uuid
from datetime import timedelta

from queue_core import Queue
from queue_core.index import IndexRepair
from queue_core.maintenance.operations import delete_finished
from queue_core.maintenance.reconciler import Reconciler

SET_AGE = """
UPDATE jobs SET status = $2, finished_at = now() - make_interval(days => $3),
                id = $4
WHERE id = $1
"""


async def make_jobs(queue: Queue, status: str, age_days: int, count: int) -> list[uuid.UUID]:
    """Jobs that finished ``age_days`` ago, with ids as old as that (ids are time-ordered)."""
    from queue_core.ids import uuid7_floor

    jobs = await queue.job_service.create_many([{"job_type": "t", "input": {}}] * count)
    ids = []
    for n, job in enumerate(jobs):
        created_ms = int(
            await queue.pool.fetchval(
                "SELECT extract(epoch FROM now() - make_interval(days => $1)) * 1000",
                age_days + 1,
            )
        )
        old_id = uuid.UUID(int=uuid7_floor(created_ms).int + n + 1)
        await queue.pool.execute(SET_AGE, uuid.UUID(job["id"]), status, age_days, old_id)
        ids.append(old_id)
    return ids


async def remaining(queue: Queue) -> dict[str, int]:
    rows = await queue.pool.fetch("SELECT status, count(*) AS n FROM jobs GROUP BY status")
    return {r["status"]: r["n"] for r in rows}


async def test_delete_finished_deletes_in_bounded_batches_and_spares_younger_jobs(
    queue: Queue,
) -> None:
    await make_jobs(queue, "succeeded", age_days=10, count=25)
    young = await make_jobs(queue, "succeeded", age_days=2, count=5)
    await make_jobs(queue, "failed", age_days=10, count=4)
    await queue.job_service.create_many([{"job_type": "t", "input": {}}] * 3)  # queued

    batches = [
        n
        async for n in delete_finished(
            queue.store, older_than=timedelta(days=7), statuses=["succeeded"], batch=10
        )
    ]

    assert batches == [10, 10, 5]
    assert await remaining(queue) == {"succeeded": 5, "failed": 4, "queued": 3}
    left = {
        r["id"] for r in await queue.pool.fetch("SELECT id FROM jobs WHERE status = 'succeeded'")
    }
    assert left == set(young)


async def test_reconciler_applies_retention_per_status_within_its_budget(queue: Queue) -> None:
    await make_jobs(queue, "succeeded", age_days=10, count=6)
    await make_jobs(queue, "cancelled", age_days=10, count=2)
    await make_jobs(queue, "failed", age_days=10, count=3)  # failed are kept 30 days
    await make_jobs(queue, "failed", age_days=40, count=2)
    settings = queue.settings.model_copy(update={"retention_batch_per_run": 5})
    reconciler = Reconciler(
        queue.store, queue.index, IndexRepair(queue.index), settings, page_size=2
    )

    first = await reconciler.run_once()
    assert first.retention_deleted == 5
    second = await reconciler.run_once()
    assert second.retention_deleted == 5  # 3 succeeded/cancelled left, then 2 old failures
    third = await reconciler.run_once()
    assert third.retention_deleted == 0
    assert await remaining(queue) == {"failed": 3}


async def test_retention_never_deletes_running_or_queued_jobs_however_old(queue: Queue) -> None:
    ids = await make_jobs(queue, "succeeded", age_days=100, count=3)
    await queue.pool.execute(
        "UPDATE jobs SET status = 'queued', finished_at = NULL WHERE id = $1", ids[0]
    )
    deleted = [
        n
        async for n in delete_finished(
            queue.store, older_than=timedelta(days=1), statuses=["succeeded", "failed", "cancelled"]
        )
    ]
    assert sum(deleted) == 2
    assert await remaining(queue) == {"queued": 1}
