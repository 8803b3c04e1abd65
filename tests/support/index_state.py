"""The Redis index as the reconciler tests see it: where a job is listed, how to settle,
break or empty a namespace's index, and the counts a ``run_once()`` is expected to return."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from queue_core import Job, Queue, keys
from queue_core.maintenance.reconciler import ReconcileResult

NOTHING_TO_DO: dict[str, Any] = {
    "skipped": False,
    "leases_rescued": 0,
    "leases_failed": 0,
    "reindexed": 0,
    "drift_fixed": 0,
    "orphans_removed": 0,
    "periodic_enqueued": 0,
    "retention_deleted": 0,
    "indexes_rebuilt": [],
}


def expect(**changes: Any) -> dict[str, Any]:
    """The counts of a run that did only ``changes``."""
    unknown = set(changes) - set(NOTHING_TO_DO)
    assert not unknown, f"not a ReconcileResult field: {unknown}"
    return {**NOTHING_TO_DO, **changes}


def counts(result: ReconcileResult) -> dict[str, Any]:
    found = asdict(result)
    del found["duration_ms"]
    return found


def tkeys(queue: Queue, job_type: str) -> keys.TypeKeys:
    return keys.type_keys(queue.settings.namespace, job_type)


def job_uuid(job: Job) -> uuid.UUID:
    return uuid.UUID(job["id"])


def in_an_hour() -> datetime:
    return datetime.now(UTC) + timedelta(hours=1)


async def placement(queue: Queue, job: Job) -> tuple[float | None, float | None]:
    """(score in the ready set, score in the scheduled set) of the job's own members."""
    k = tkeys(queue, job["job_type"])
    jid = job_uuid(job)
    return (
        await queue.redis.zscore(k.ready, keys.ready_member(jid)),
        await queue.redis.zscore(k.scheduled, keys.scheduled_member(jid, job["priority"])),
    )


async def assert_ready(queue: Queue, job: Job) -> None:
    """Listed once, in the ready set, with the score its Postgres row implies."""
    job = await queue.job_service.get(job["id"])
    expected = (keys.ready_score(job["priority"], job["scheduled_for"]), None)
    assert await placement(queue, job) == expected, job


async def assert_scheduled(queue: Queue, job: Job) -> None:
    """Listed once, in the scheduled set, due when its Postgres row says."""
    job = await queue.job_service.get(job["id"])
    expected = (None, keys.due_ms(job["scheduled_for"]))
    assert await placement(queue, job) == expected, job


async def assert_not_indexed(queue: Queue, job: Job) -> None:
    assert await placement(queue, job) == (None, None), job


async def set_sizes(queue: Queue, job_type: str) -> tuple[int, int]:
    k = tkeys(queue, job_type)
    return await queue.redis.zcard(k.ready), await queue.redis.zcard(k.scheduled)


async def settle(queue: Queue, *job_types: str) -> None:
    """The first run on a fresh namespace: marks each type's index complete and finds no
    drift, because the JobService indexed every job it created."""
    await queue.job_service.wait_indexed()
    result = await queue.reconciler().run_once()
    assert counts(result) == expect(indexes_rebuilt=sorted(job_types))


async def unindex(queue: Queue, job: Job) -> None:
    await queue.job_service.wait_indexed()  # create() indexes in the background
    k = tkeys(queue, job["job_type"])
    jid = job_uuid(job)
    await queue.redis.zrem(k.ready, keys.ready_member(jid))
    await queue.redis.zrem(k.scheduled, keys.scheduled_member(jid, job["priority"]))


async def delete_namespace_keys(queue: Queue) -> int:
    """What a Redis restart without persistence does to this test's namespace."""
    found = [
        key
        async for key in queue.redis.scan_iter(match=f"{{{queue.settings.namespace}:*", count=1000)
    ]
    return int(await queue.redis.delete(*found)) if found else 0


async def claim_by_dead_worker(queue: Queue, *jobs: Job, lease_seconds: float = 30) -> None:
    """A worker popped the jobs from Redis, confirmed them in Postgres, then died; its lease
    is over."""
    claimed = []
    for job in jobs:
        claimed += await queue.store.claim_jobs(
            job["job_type"], [job_uuid(job)], "dead-worker", lease_seconds
        )
    assert len(claimed) == len(jobs)
    for job in jobs:
        await unindex(queue, job)
    await queue.pool.execute(
        "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = ANY($1)",
        [job_uuid(j) for j in jobs],
    )
