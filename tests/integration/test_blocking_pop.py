"""RedisIndex.wait_pop, the idle worker's blocking pop, against real Redis."""

from __future__ import annotations

import asyncio
import uuid

from queue_core import Queue, keys
from queue_core.ports import PoppedId
from tests.support.aio import mark_index_complete


async def test_times_out_with_none_when_nothing_is_ready(queue: Queue) -> None:
    assert await queue.index.wait_pop(["a", "b"], 0.05) is None


async def test_hands_a_job_indexed_while_waiting_to_one_waiter_only(queue: Queue) -> None:
    await mark_index_complete(queue, "a", "b")
    waiters = [asyncio.create_task(queue.index.wait_pop(["a", "b"], 2.0)) for _ in range(2)]
    await asyncio.sleep(0.1)  # both are blocked in Redis now
    job = await queue.job_service.create("b", {"n": 1})
    done, pending = await asyncio.wait(waiters, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1
    popped = done.pop().result()
    assert isinstance(popped, PoppedId)
    assert popped.job_type == "b" and str(popped.id) == job["id"]
    assert popped.score == keys.ready_score(0, job["scheduled_for"])
    assert [await w for w in pending] == [None]  # the other one timed out empty-handed


async def test_pops_by_priority_and_drops_foreign_members(queue: Queue) -> None:
    low = await queue.job_service.create("a", {}, priority=0)
    high = await queue.job_service.create("a", {}, priority=5)
    await queue.job_service.wait_indexed()
    first = await queue.index.wait_pop(["a"], 0.5)
    second = await queue.index.wait_pop(["a"], 0.5)
    assert first is not None and second is not None
    assert [str(first.id), str(second.id)] == [high["id"], low["id"]]

    ready = keys.type_keys(queue.settings.namespace, "a").ready
    await queue.redis.zadd(ready, {b"not-an-id": 0})
    assert await queue.index.wait_pop(["a"], 0.5) is None
    assert await queue.redis.zcard(ready) == 0


async def test_restore_puts_a_popped_id_back_in_its_place(queue: Queue) -> None:
    job = await queue.job_service.create("a", {})
    await queue.job_service.wait_indexed()
    popped = await queue.index.wait_pop(["a"], 0.5)
    assert popped is not None and popped.id == uuid.UUID(job["id"])
    await queue.index.restore_ids("a", [popped.id], [popped.score])
    again = await queue.index.wait_pop(["a"], 0.5)
    assert again == popped
