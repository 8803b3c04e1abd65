"""RedisIndex.wait_pop, the idle worker's blocking pop, against real Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

from queue_core import Queue, keys
from queue_core.models import PoppedId
from tests.support.aio import mark_index_complete, running, wait_until


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


async def test_stop_interrupts_an_idle_workers_blocking_pop(queue: Queue) -> None:
    await mark_index_complete(queue, "a")

    async def handler(job: dict[str, object]) -> None:
        return None

    runner = queue.runner()
    runner.register_handler("a", handler)
    task = asyncio.create_task(runner.run())
    await asyncio.sleep(0.3)  # idle: blocked in BZPOPMIN for up to a second
    stopped_at = time.monotonic()
    runner.stop()
    await asyncio.wait_for(task, 5)
    # Functional bound: stop() cancelled the pop instead of waiting for it to time out.
    assert time.monotonic() - stopped_at < 0.5


async def test_indexing_a_scheduled_job_wakes_a_blocked_pop(queue: Queue) -> None:
    await mark_index_complete(queue, "a")
    waiter = asyncio.create_task(queue.index.wait_pop(["a"], 2.0))
    await asyncio.sleep(0.1)
    when = datetime.now(UTC) + timedelta(seconds=30)
    await queue.job_service.create("a", {}, scheduled_for=when)
    # None, at once: not a job (it is not due), but the signal to claim and time it.
    assert await asyncio.wait_for(waiter, 0.5) is None


async def test_idle_worker_starts_a_job_scheduled_meanwhile_on_time(queue: Queue) -> None:
    await mark_index_complete(queue, "a")
    started: list[datetime] = []

    async def handler(job: dict[str, object]) -> None:
        started.append(datetime.now(UTC))

    runner = queue.runner()
    runner.register_handler("a", handler)
    async with running(runner):
        await asyncio.sleep(0.2)  # idle, blocked in BZPOPMIN for up to a second
        due = datetime.now(UTC) + timedelta(milliseconds=200)
        await queue.job_service.create("a", {}, scheduled_for=due)
        await wait_until(lambda: _true(bool(started)), timeout=5)
    # Functional bound: woken to time the promotion, not left blocked until the pop's
    # one-second timeout.
    late = (started[0] - due).total_seconds()
    assert -0.01 <= late < 0.4, late


async def _true(value: bool) -> bool:
    return value
