"""The reconciler repairs the Redis index against real PostgreSQL and Redis: one test per
kind of drift (a queued job missing, a wrong score, an orphan, a stale or malformed member).

Each test creates jobs through the JobService, settles the index with a first run (a fresh
namespace has no epoch keys, so that run reports every type as rebuilt), injects one kind of
drift with raw SQL or raw Redis commands, runs ``run_once()`` and asserts both the counts it
returns and the state it leaves in both stores.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from queue_core import Queue, keys
from queue_core.index import IndexRepair
from queue_core.keys import IndexSet
from tests.support.index_state import (
    assert_ready,
    assert_scheduled,
    counts,
    expect,
    in_an_hour,
    job_uuid,
    placement,
    set_sizes,
    settle,
    tkeys,
    unindex,
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
