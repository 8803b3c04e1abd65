"""Workers announce the job types they run while they are alive (index/presence.py), so
stats can show queued jobs that no live worker would ever run."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from queue_core import Queue, keys
from queue_core.index import RedisIndex, create_client
from queue_core.index.presence import announce_worker, withdraw_worker
from queue_core.maintenance.operations import queue_stats
from queue_core.models import LiveWorker
from tests.support.aio import running, wait_until


async def ok(job: dict[str, Any]) -> dict[str, Any]:
    return {}


async def test_an_announced_worker_is_live_until_it_withdraws(queue: Queue) -> None:
    ns = queue.settings.namespace
    await announce_worker(queue.redis, ns, "w-1", ["b", "a"], ttl_seconds=30)

    assert await queue.index.live_workers() == [LiveWorker("w-1", ("a", "b"))]
    ttl_ms = await queue.redis.pttl(keys.worker_key(ns, "w-1"))
    assert 0 < ttl_ms <= 30_000

    await withdraw_worker(queue.redis, ns, "w-1")
    assert await queue.index.live_workers() == []
    assert await queue.redis.zcard(keys.workers_key(ns)) == 0


async def test_a_worker_whose_announcement_expired_is_not_live(queue: Queue) -> None:
    ns = queue.settings.namespace
    await announce_worker(queue.redis, ns, "alive", ["a"], ttl_seconds=30)
    await announce_worker(queue.redis, ns, "dead", ["a"], ttl_seconds=30)
    await queue.redis.pexpire(keys.worker_key(ns, "dead"), 1)  # it stopped renewing

    async def only_the_live_one() -> bool:
        return [w.worker_id for w in await queue.index.live_workers()] == ["alive"]

    await wait_until(only_the_live_one, timeout=5)


async def test_a_running_worker_announces_its_types_and_withdraws_when_it_stops(
    queue: Queue,
) -> None:
    runner = queue.runner(worker_id="presence-test")
    runner.register_handler("alpha", ok)
    runner.register_handler("beta", ok)

    async with running(runner):

        async def announced() -> bool:
            return await queue.index.live_workers() == [
                LiveWorker("presence-test", ("alpha", "beta"))
            ]

        await wait_until(announced, timeout=10)

    assert await queue.index.live_workers() == []


async def test_stats_count_queued_jobs_of_types_no_live_worker_registered(
    queue: Queue,
) -> None:
    await queue.job_service.create_many([{"job_type": "emial_processing", "input": {}}] * 2)
    await queue.job_service.create("served", {})
    runner = queue.runner()
    runner.register_handler("served", ok)
    runner.register_handler("idle_type", ok)

    async with running(runner):
        await wait_until(lambda: has_live_worker(queue), timeout=10)
        stats = {t.job_type: t for t in await queue_stats(queue.store, queue.index)}

    assert set(stats) == {"emial_processing", "served", "idle_type"}
    typo = stats["emial_processing"]
    assert (typo.live_workers, typo.queued_without_worker) == (0, 2)
    assert (stats["served"].live_workers, stats["served"].queued_without_worker) == (1, 0)
    assert stats["idle_type"].live_workers == 1 and stats["idle_type"].by_status == {}


async def has_live_worker(queue: Queue) -> bool:
    return bool(await queue.index.live_workers())


async def test_announcing_without_redis_logs_once_and_never_raises(
    queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    dead = create_client("redis://127.0.0.1:1/0")
    index = RedisIndex(dead, queue.settings.namespace)
    task = asyncio.create_task(index.keep_worker_announced("w-dead", ["a"], ttl_seconds=0.06))

    async def warned() -> bool:
        return any(r.getMessage().startswith("worker announcement failed") for r in caplog.records)

    try:
        await wait_until(warned, timeout=10)
        await asyncio.sleep(0.1)  # a few more renewals fail while Redis stays away
        assert not task.done(), task
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await dead.aclose()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
