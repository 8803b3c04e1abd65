"""The reconciler and expired leases, against real PostgreSQL and Redis: a dead worker's job
goes back to the queue with a backoff, or fails when no retry is left; live leases stay.

Each test settles the index with a first run, lets a "dead worker" claim jobs and lose its
lease, runs ``run_once()`` and asserts the counts it returns and the state of both stores.
"""

from __future__ import annotations

from datetime import timedelta

from queue_core import Queue
from queue_core.index import IndexRepair
from queue_core.maintenance.reconciler import Reconciler
from tests.support.index_state import (
    assert_not_indexed,
    assert_scheduled,
    claim_by_dead_worker,
    counts,
    expect,
    job_uuid,
    set_sizes,
    settle,
    unindex,
)


async def test_reconciler_rescues_expired_lease_back_to_queued_with_backoff(
    queue: Queue,
) -> None:
    job = await queue.job_service.create("t", {"n": 1}, priority=2)
    await settle(queue, "t")
    await claim_by_dead_worker(queue, job)
    before = await queue.pool.fetchval("SELECT clock_timestamp()")

    result = await queue.reconciler().run_once()

    after = await queue.pool.fetchval("SELECT clock_timestamp()")
    assert counts(result) == expect(leases_rescued=1)
    rescued = await queue.job_service.get(job["id"])
    assert rescued["status"] == "queued"
    assert rescued["attempts"] == 1  # the lost attempt counts
    assert rescued["lease_owner"] is None and rescued["lease_expires_at"] is None
    assert rescued["finished_at"] is None
    assert "lease expired" in rescued["last_error"]
    assert "dead-worker" not in rescued["last_error"]  # the owner sees no host or pid
    assert "dead-worker" in rescued["error_detail"]  # the admin does
    # first retry: base * [0.5, 1), truncated to the millisecond
    base = timedelta(seconds=queue.settings.retry_base_seconds)
    assert before + base / 2 - timedelta(milliseconds=1) <= rescued["scheduled_for"]
    assert rescued["scheduled_for"] <= after + base
    assert rescued["scheduled_for"] > before
    await assert_scheduled(queue, rescued)
    assert await set_sizes(queue, "t") == (0, 1)


async def test_rescue_backoff_doubles_per_attempt_up_to_the_cap(queue: Queue) -> None:
    jobs = await queue.job_service.create_many(
        [{"job_type": "t", "input": {"n": n}, "max_retries": 10} for n in range(3)]
    )
    await settle(queue, "t")
    await claim_by_dead_worker(queue, *jobs)
    for job, attempts in zip(jobs, (1, 3, 7), strict=True):
        await queue.pool.execute(
            "UPDATE jobs SET attempts = $2 WHERE id = $1", job_uuid(job), attempts
        )
    settings = queue.settings.model_copy(
        update={"retry_base_seconds": 10.0, "retry_cap_seconds": 60.0}
    )
    before = await queue.pool.fetchval("SELECT clock_timestamp()")

    result = await Reconciler(
        queue.store, queue.index, IndexRepair(queue.index), settings
    ).run_once()

    after = await queue.pool.fetchval("SELECT clock_timestamp()")
    assert counts(result) == expect(leases_rescued=3)
    # attempt 1: 10 s, attempt 3: 40 s, attempt 7: 640 s capped to 60 s; each times [0.5, 1)
    for job, full_delay in zip(jobs, (10, 40, 60), strict=True):
        rescued = await queue.job_service.get(job["id"])
        low = before + timedelta(seconds=full_delay / 2, milliseconds=-1)
        high = after + timedelta(seconds=full_delay)
        assert low <= rescued["scheduled_for"] <= high, (full_delay, rescued, before, after)
        assert rescued["status"] == "queued"
        await assert_scheduled(queue, rescued)


async def test_reconciler_fails_expired_lease_when_no_retry_left(queue: Queue) -> None:
    last_chance = await queue.job_service.create("t", {"n": 1}, max_retries=0)
    one_retry = await queue.job_service.create("t", {"n": 2}, max_retries=1)
    await settle(queue, "t")
    await claim_by_dead_worker(queue, last_chance, one_retry)
    started = (await queue.job_service.get(last_chance["id"]))["scheduled_for"]

    result = await queue.reconciler().run_once()

    assert counts(result) == expect(leases_rescued=1, leases_failed=1)
    failed = await queue.job_service.get(last_chance["id"])
    assert failed["status"] == "failed"
    assert failed["attempts"] == 1
    assert failed["finished_at"] is not None
    assert failed["lease_owner"] is None and failed["lease_expires_at"] is None
    assert failed["scheduled_for"] == started  # a failed job is not rescheduled
    assert "lease expired" in failed["last_error"] and "dead-worker" in failed["error_detail"]
    await assert_not_indexed(queue, failed)
    assert (await queue.job_service.get(one_retry["id"]))["status"] == "queued"

    # the retried job's second attempt dies too: attempt 2 > max_retries 1, so it fails
    await queue.pool.execute(
        "UPDATE jobs SET scheduled_for = now() - interval '1 second' WHERE id = $1",
        job_uuid(one_retry),
    )
    await unindex(queue, one_retry)
    await claim_by_dead_worker(queue, one_retry)

    result = await queue.reconciler().run_once()

    assert counts(result) == expect(leases_failed=1)
    second = await queue.job_service.get(one_retry["id"])
    assert (second["status"], second["attempts"]) == ("failed", 2)
    assert "attempt 2" in second["last_error"]
    await assert_not_indexed(queue, second)
    assert await set_sizes(queue, "t") == (0, 0)


async def test_reconciler_leaves_live_leases_alone(queue: Queue) -> None:
    job = await queue.job_service.create("t", {"n": 1})
    await settle(queue, "t")
    [claimed] = await queue.store.claim_jobs(job["job_type"], [job_uuid(job)], "live-worker", 30)
    await unindex(queue, job)  # what the claim script's pop did

    result = await queue.reconciler().run_once()

    assert counts(result) == expect()
    assert await queue.job_service.get(job["id"]) == claimed
    assert claimed["status"] == "running" and claimed["attempts"] == 1
    await assert_not_indexed(queue, job)
