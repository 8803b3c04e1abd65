"""The reconciler against real PostgreSQL and Redis: one test per kind of drift.

Each test creates jobs through the JobService, settles the index with a first run (a fresh
namespace has no epoch keys, so that run reports every type as rebuilt), injects one kind of
drift with raw SQL or raw Redis commands, runs ``run_once()`` and asserts both the counts it
returns and the state it leaves in both stores.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from queue_core import Job, Queue, keys
from queue_core.index import IndexRepair
from queue_core.keys import IndexSet
from queue_core.maintenance.reconciler import Reconciler, ReconcileResult
from tests.support.workers import REPO, worker_env

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


async def test_reconciler_reindexes_queued_job_missing_from_redis(queue: Queue) -> None:
    ready = await queue.job_service.create("t", {"n": 1}, priority=7)
    later = await queue.job_service.create("t", {"n": 2}, priority=-3, scheduled_for=in_an_hour())
    kept = await queue.job_service.create("t", {"n": 3})
    await settle(queue, "t")
    kept_placement = await placement(queue, kept)
    await unindex(queue, ready)
    await unindex(queue, later)
    assert await set_sizes(queue, "t") == (1, 0)

    result = await queue.reconciler().run_once()

    assert counts(result) == expect(reindexed=2)
    k = tkeys(queue, "t")
    assert await queue.redis.zscore(k.ready, keys.ready_member(job_uuid(ready))) == (
        keys.ready_score(7, ready["scheduled_for"])
    )
    later_member = job_uuid(later).bytes + (1000 + 3).to_bytes(2, "big")  # rank of priority -3
    assert await queue.redis.zscore(k.scheduled, later_member) == keys.due_ms(
        later["scheduled_for"]
    )
    assert await placement(queue, ready) == (keys.ready_score(7, ready["scheduled_for"]), None)
    assert await placement(queue, kept) == kept_placement
    assert await set_sizes(queue, "t") == (2, 1)
    for job in (ready, later, kept):
        assert (await queue.job_service.get(job["id"]))["status"] == "queued"


async def test_reconciler_removes_redis_ids_whose_job_is_not_queued(queue: Queue) -> None:
    queued = await queue.job_service.create("t", {"n": "queued"})
    queued_later = await queue.job_service.create("t", {"n": "later"}, scheduled_for=in_an_hour())
    succeeded = await queue.job_service.create("t", {"n": "succeeded"}, priority=2)
    cancelled = await queue.job_service.create("t", {"n": "cancelled"})
    running = await queue.job_service.create("t", {"n": "running"}, priority=-1)
    await settle(queue, "t")
    await queue.pool.execute(
        "UPDATE jobs SET status = 'succeeded', finished_at = now() WHERE id = $1",
        job_uuid(succeeded),
    )
    await queue.job_service.cancel(cancelled["id"])  # leaves Redis: re-listed below
    [claimed] = await queue.store.claim_jobs(
        running["job_type"], [job_uuid(running)], "live-worker", 30
    )
    ghost = uuid.uuid4()  # listed in Redis, never in Postgres
    k = tkeys(queue, "t")
    due = keys.due_ms(datetime.now(UTC))
    ready_orphans = {
        keys.ready_member(i): due + n
        for n, i in enumerate([job_uuid(succeeded), job_uuid(cancelled), ghost])
    }  # running is still listed as ready
    scheduled_orphans = {
        keys.scheduled_member(job_uuid(succeeded), 2): due + 10,
        keys.scheduled_member(job_uuid(cancelled), 0): due + 11,
        keys.scheduled_member(job_uuid(running), -1): due + 12,
        keys.scheduled_member(ghost, 0): due + 13,
    }
    await queue.redis.zadd(k.ready, ready_orphans)
    await queue.redis.zadd(k.scheduled, scheduled_orphans)
    before = (await placement(queue, queued), await placement(queue, queued_later))
    assert await set_sizes(queue, "t") == (5, 5)

    result = await queue.reconciler().run_once()

    assert counts(result) == expect(orphans_removed=8)
    assert await set_sizes(queue, "t") == (1, 1)
    assert (await placement(queue, queued), await placement(queue, queued_later)) == before
    statuses = {
        j["id"]: (await queue.job_service.get(j["id"]))["status"]
        for j in (succeeded, cancelled, running)
    }
    assert statuses == {
        succeeded["id"]: "succeeded",
        cancelled["id"]: "cancelled",
        running["id"]: "running",
    }
    still_running = await queue.job_service.get(running["id"])
    assert still_running["lease_owner"] == "live-worker"
    assert still_running["lease_expires_at"] == claimed["lease_expires_at"]


async def test_reconciler_fixes_drifted_priority_score(queue: Queue) -> None:
    high = await queue.job_service.create("t", {"n": 1}, priority=10)
    low = await queue.job_service.create("t", {"n": 2}, priority=-10)
    later = await queue.job_service.create("t", {"n": 3}, priority=4, scheduled_for=in_an_hour())
    await settle(queue, "t")
    k = tkeys(queue, "t")
    # high's score says priority -10 (it would be claimed after low); later is due an hour late
    await queue.redis.zadd(
        k.ready, {keys.ready_member(job_uuid(high)): keys.ready_score(-10, high["scheduled_for"])}
    )
    await queue.redis.zadd(
        k.scheduled,
        {
            keys.scheduled_member(job_uuid(later), 4): keys.due_ms(later["scheduled_for"])
            + 3_600_000
        },
    )
    low_before = await placement(queue, low)

    result = await queue.reconciler().run_once()

    assert counts(result) == expect(drift_fixed=2)
    await assert_ready(queue, high)
    await assert_scheduled(queue, later)
    assert await placement(queue, low) == low_before
    assert await queue.redis.zrange(k.ready, 0, -1) == [job_uuid(high).bytes, job_uuid(low).bytes]
    assert await set_sizes(queue, "t") == (2, 1)


async def test_reconciler_fixes_ready_score_after_priority_changed_in_postgres(
    queue: Queue,
) -> None:
    job = await queue.job_service.create("t", {"n": 1}, priority=1)
    await settle(queue, "t")
    await queue.pool.execute("UPDATE jobs SET priority = 50 WHERE id = $1", job_uuid(job))

    result = await queue.reconciler().run_once()

    assert counts(result) == expect(drift_fixed=1)
    await assert_ready(queue, job)
    assert await placement(queue, job) == (keys.ready_score(50, job["scheduled_for"]), None)


async def test_reconciler_moves_future_job_out_of_ready_set(queue: Queue) -> None:
    later = await queue.job_service.create("t", {"n": 1}, priority=3, scheduled_for=in_an_hour())
    both = await queue.job_service.create("t", {"n": 2}, scheduled_for=in_an_hour())
    await settle(queue, "t")
    k = tkeys(queue, "t")
    # later sits only in the ready set (a worker would pop it an hour early); both is listed
    # in the ready set too, next to its correct scheduled entry
    await queue.redis.zrem(k.scheduled, keys.scheduled_member(job_uuid(later), 3))
    await queue.redis.zadd(
        k.ready,
        {
            keys.ready_member(job_uuid(later)): keys.ready_score(3, later["scheduled_for"]),
            keys.ready_member(job_uuid(both)): keys.ready_score(0, both["scheduled_for"]),
        },
    )
    assert await set_sizes(queue, "t") == (2, 1)

    result = await queue.reconciler().run_once()

    assert counts(result) == expect(drift_fixed=2)
    await assert_scheduled(queue, later)
    await assert_scheduled(queue, both)
    assert await set_sizes(queue, "t") == (0, 2)


async def test_reconciler_removes_duplicate_entry_from_scheduled_set(queue: Queue) -> None:
    job = await queue.job_service.create("t", {"n": 1}, priority=5)
    await settle(queue, "t")
    k = tkeys(queue, "t")
    # due now, listed as ready and also still as scheduled: a worker could run it twice over
    await queue.redis.zadd(
        k.scheduled, {keys.scheduled_member(job_uuid(job), 5): keys.due_ms(job["scheduled_for"])}
    )
    assert await set_sizes(queue, "t") == (1, 1)

    result = await queue.reconciler().run_once()

    assert counts(result) == expect(drift_fixed=1)
    await assert_ready(queue, job)
    assert await set_sizes(queue, "t") == (1, 0)


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
    assert "dead-worker" in rescued["last_error"]
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
    assert "lease expired" in failed["last_error"] and "dead-worker" in failed["last_error"]
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


async def test_reconciler_detects_lost_index_and_marks_it_rebuilt(queue: Queue) -> None:
    alpha_now = await queue.job_service.create("alpha", {"n": 1}, priority=3)
    alpha_later = await queue.job_service.create("alpha", {"n": 2}, scheduled_for=in_an_hour())
    beta_now = await queue.job_service.create("beta", {"n": 3}, priority=-5)
    await settle(queue, "alpha", "beta")
    for t in ("alpha", "beta"):
        assert await queue.redis.exists(tkeys(queue, t).epoch) == 1
    assert await delete_namespace_keys(queue) == 6  # 3 sets + 2 epochs + alpha's wake set

    result = await queue.reconciler().run_once()

    assert counts(result) == expect(reindexed=3, indexes_rebuilt=["alpha", "beta"])
    await assert_ready(queue, alpha_now)
    await assert_scheduled(queue, alpha_later)
    await assert_ready(queue, beta_now)
    for t in ("alpha", "beta"):
        assert await queue.redis.exists(tkeys(queue, t).epoch) == 1
        assert await queue.redis.exists(tkeys(queue, t).rebuild) == 0

    again = await queue.reconciler().run_once()

    assert counts(again) == expect()


async def test_rebuild_index_marks_a_type_without_jobs(queue: Queue) -> None:
    """A worker of a type with no jobs finds no epoch; its rebuild must still mark it."""
    result = await queue.reconciler().rebuild_index(["idle"])

    assert counts(result) == expect(indexes_rebuilt=["idle"])
    assert await queue.redis.exists(tkeys(queue, "idle").epoch) == 1
    assert await set_sizes(queue, "idle") == (0, 0)


async def test_reconciler_pages_through_a_backlog_larger_than_one_page(queue: Queue) -> None:
    def spec(job_type: str, n: int, future: bool) -> dict[str, Any]:
        return {
            "job_type": job_type,
            "input": {"n": n},
            "priority": n % 3 - 1,
            "scheduled_for": in_an_hour() if future else None,
        }

    alpha = await queue.job_service.create_many([spec("alpha", n, n % 4 == 0) for n in range(30)])
    beta = await queue.job_service.create_many(
        [spec("beta", n, n < 8 and n % 2 == 0) for n in range(20)]
    )
    await settle(queue, "alpha", "beta")
    missing = alpha[0:10] + beta[0:5]
    drifted = alpha[10:14] + beta[5:8]
    expired = beta[8:17]  # more than a page of leases to rescue
    for job in missing:
        await unindex(queue, job)
    for job in drifted:
        k = tkeys(queue, job["job_type"])
        ready, scheduled = await placement(queue, job)
        if ready is not None:
            await queue.redis.zadd(k.ready, {keys.ready_member(job_uuid(job)): ready + 1})
        else:
            member = keys.scheduled_member(job_uuid(job), job["priority"])
            await queue.redis.zadd(k.scheduled, {member: scheduled + 1})
    await claim_by_dead_worker(queue, *expired)
    # Over 128 members: the ready set leaves listpack encoding, so ZSCAN walks it in pages.
    due = keys.due_ms(datetime.now(UTC))
    await queue.redis.zadd(
        tkeys(queue, "alpha").ready, {uuid.uuid4().bytes: due + n for n in range(200)}
    )
    await queue.redis.zadd(
        tkeys(queue, "beta").scheduled,
        {uuid.uuid4().bytes + b"\x03\xe8": due + n for n in range(8)},
    )

    result = await Reconciler(
        queue.store, queue.index, IndexRepair(queue.index), queue.settings, page_size=7
    ).run_once()

    assert counts(result) == expect(
        leases_rescued=9, reindexed=15, drift_fixed=7, orphans_removed=208
    )
    expired_ids = {j["id"] for j in expired}
    for job in alpha + beta:
        if job["id"] in expired_ids or job["scheduled_for"] > datetime.now(UTC):
            await assert_scheduled(queue, job)
        else:
            await assert_ready(queue, job)
    assert await set_sizes(queue, "alpha") == (22, 8)
    assert await set_sizes(queue, "beta") == (20 - 4 - 9, 4 + 9)
    statuses = await queue.pool.fetch("SELECT status, count(*) FROM jobs GROUP BY status")
    assert {r["status"]: r["count"] for r in statuses} == {"queued": 50}

    again = await Reconciler(
        queue.store, queue.index, IndexRepair(queue.index), queue.settings, page_size=7
    ).run_once()

    assert counts(again) == expect()


async def test_second_concurrent_reconciler_skips_its_run(queue: Queue) -> None:
    job = await queue.job_service.create("t", {"n": 1})
    await settle(queue, "t")
    await unindex(queue, job)

    async with queue.store.reconcile_lock() as acquired:
        assert acquired
        result = await queue.reconciler().run_once()

    assert counts(result) == expect(skipped=True)
    await assert_not_indexed(queue, job)

    after_release = await queue.reconciler().run_once()

    assert counts(after_release) == expect(reindexed=1)
    await assert_ready(queue, job)


async def test_orphan_removal_keeps_entry_reindexed_concurrently(queue: Queue) -> None:
    repair = IndexRepair(queue.index)
    k = tkeys(queue, "t")
    stale, reindexed, gone = uuid.uuid4().bytes, uuid.uuid4().bytes, uuid.uuid4().bytes
    await queue.redis.zadd(k.ready, {stale: 1000.0, reindexed: 2000.0})
    seen = [(stale, 1000.0), (reindexed, 2000.0), (gone, 3000.0)]
    # after the reconciler read its page, a worker re-indexed one of the ids (new score)
    await queue.redis.zadd(k.ready, {reindexed: 2500.0})

    removed = await repair.remove_if_unchanged("t", IndexSet.READY, seen)

    assert removed == 1
    assert await queue.redis.zrange(k.ready, 0, -1, withscores=True) == [(reindexed, 2500.0)]


async def test_orphan_removal_compares_full_precision_scores(queue: Queue) -> None:
    """Ready scores have 16 digits (past 2^51): the score a removal compares must survive
    the trip through Python's repr and Lua's tonumber to the last unit."""
    repair = IndexRepair(queue.index)
    k = tkeys(queue, "t")
    score = keys.ready_score(-1000, datetime.now(UTC))
    assert score > 2**51
    member = uuid.uuid4().bytes
    await queue.redis.zadd(k.ready, {member: score})
    await queue.redis.zadd(k.ready, {member: score + 1})  # re-indexed: differs in the last bit
    assert await repair.remove_if_unchanged("t", IndexSet.READY, [(member, float(score))]) == 0
    assert await repair.remove_if_unchanged("t", IndexSet.READY, [(member, float(score + 1))]) == 1
    assert await queue.redis.zcard(k.ready) == 0


async def test_rebuild_interrupted_by_redis_data_loss_leaves_index_unmarked(
    queue: Queue,
) -> None:
    repair = IndexRepair(queue.index)
    k = tkeys(queue, "t")
    token = await repair.begin_rebuild("t")
    assert await queue.redis.get(k.rebuild) == token.encode()
    await queue.redis.delete(k.rebuild)  # FLUSHALL / restart while the rebuild ran

    assert await repair.finish_rebuild("t", token) is False
    assert await queue.redis.exists(k.epoch) == 0

    token = await repair.begin_rebuild("t")
    assert await repair.finish_rebuild("t", "another rebuild's token") is False
    assert await queue.redis.exists(k.epoch) == 0
    assert await repair.finish_rebuild("t", token) is True
    assert await queue.redis.get(k.epoch) == token.encode()
    assert await queue.redis.exists(k.rebuild) == 0


async def test_run_interrupted_by_redis_data_loss_is_finished_by_the_next_run(
    queue: Queue,
) -> None:
    jobs = await queue.job_service.create_many(
        [{"job_type": "t", "input": {"n": n}} for n in range(3)]
    )
    await settle(queue, "t")
    reconciler = queue.reconciler()
    original = reconciler.repair.scores_of
    lost: list[int] = []

    async def scores_of_then_flush(job_type: str, entries: Any) -> Any:
        scores = await original(job_type, entries)
        if not lost:  # Redis loses everything after the scores were read
            lost.append(await delete_namespace_keys(queue))
        return scores

    reconciler.repair.scores_of = scores_of_then_flush  # type: ignore[method-assign]

    result = await reconciler.run_once()

    assert lost == [3]  # the ready set, the epoch and the rebuild marker
    assert counts(result) == expect()  # the scores it read showed nothing to repair
    assert await queue.redis.exists(tkeys(queue, "t").epoch) == 0  # so workers keep off Redis
    for job in jobs:
        await assert_not_indexed(queue, job)

    again = await queue.reconciler().run_once()

    assert counts(again) == expect(reindexed=3, indexes_rebuilt=["t"])
    for job in jobs:
        await assert_ready(queue, job)
    assert await queue.redis.exists(tkeys(queue, "t").epoch) == 1


async def test_reconcile_cli_once_prints_one_json_line_of_counts(queue: Queue) -> None:
    job = await queue.job_service.create("t", {"n": 1})
    await unindex(queue, job)

    proc = subprocess.run(
        # a handlers module without periodic jobs: this run must only repair
        [
            sys.executable,
            "-m",
            "queue_core",
            "reconcile",
            "--once",
            "--handlers",
            "tests.support.recording",
        ],
        env=worker_env(queue.settings, Path("/dev/null")),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    printed = json.loads(lines[0])
    assert set(printed) == set(NOTHING_TO_DO) | {"duration_ms"}
    assert isinstance(printed.pop("duration_ms"), float)
    assert printed == expect(reindexed=1, indexes_rebuilt=["t"])
    await assert_ready(queue, job)
    assert await queue.redis.exists(tkeys(queue, "t").epoch) == 1


async def test_reconciler_removes_entry_filed_under_another_job_type(queue: Queue) -> None:
    alpha = await queue.job_service.create("alpha", {"n": 1})
    beta = await queue.job_service.create("beta", {"n": 2})
    await settle(queue, "alpha", "beta")
    await queue.redis.zadd(
        tkeys(queue, "alpha").ready,
        {keys.ready_member(job_uuid(beta)): keys.ready_score(0, beta["scheduled_for"])},
    )

    result = await queue.reconciler().run_once()

    assert await set_sizes(queue, "alpha") == (1, 0), "beta's id is still in alpha's set"
    assert counts(result) == expect(orphans_removed=1)
    await assert_ready(queue, alpha)
    await assert_ready(queue, beta)


async def test_reconciler_replaces_scheduled_entry_with_a_stale_priority_rank(
    queue: Queue,
) -> None:
    job = await queue.job_service.create("t", {"n": 1}, priority=5, scheduled_for=in_an_hour())
    await settle(queue, "t")
    await queue.pool.execute("UPDATE jobs SET priority = 9 WHERE id = $1", job_uuid(job))

    await queue.reconciler().run_once()

    members = await queue.redis.zrange(tkeys(queue, "t").scheduled, 0, -1)
    assert members == [keys.scheduled_member(job_uuid(job), 9)]


async def test_reconciler_removes_malformed_member(queue: Queue) -> None:
    job = await queue.job_service.create("t", {"n": 1})
    await settle(queue, "t")
    await queue.redis.zadd(tkeys(queue, "t").ready, {b"garbage": 1})

    result = await queue.reconciler().run_once()

    assert counts(result) == expect(orphans_removed=1)
    await assert_ready(queue, job)
    assert await set_sizes(queue, "t") == (1, 0)
