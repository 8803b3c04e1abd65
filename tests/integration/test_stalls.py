"""What one handler's misbehaviour must not cost the jobs beside it, in a real worker on
real servers: a handler that blocks the event loop does not make its neighbours time out,
and a handler that holds a row lock on its own job does not stop the other leases from
being renewed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from queue_core import Queue
from queue_core.maintenance.reconciler import Reconciler
from tests.support.aio import mark_index_complete, running, wait_for_status

LEASE = 2.0


async def test_a_neighbour_is_not_timed_out_for_a_loop_another_handler_blocked(
    queue: Queue,
) -> None:
    async def polite(job: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.5)
        return {"polite": True}

    async def hog(job: dict[str, Any]) -> dict[str, Any]:
        time.sleep(2.5)  # blocks the loop, well within its own timeout
        return {"hog": True}

    # polite first (priority): it is awaiting its sleep when hog blocks the loop.
    nice = await queue.job_service.create("polite", {}, priority=1, max_retries=0)
    rude = await queue.job_service.create("hog", {}, priority=0, max_retries=0)
    await mark_index_complete(queue, "polite")
    await mark_index_complete(queue, "hog")
    runner = queue.runner(concurrency=2)
    runner.register_handler("polite", polite, timeout=1.0)
    runner.register_handler("hog", hog, timeout=30.0)
    async with running(runner):
        done = [
            await wait_for_status(queue.job_service, j["id"], {"succeeded", "failed"})
            for j in (nice, rude)
        ]
    assert [d["status"] for d in done] == ["succeeded", "succeeded"], [
        d["last_error"] for d in done
    ]


async def test_a_handler_locking_its_own_row_does_not_stop_the_other_renewals(
    queue: Queue,
) -> None:
    """Without the backstop (it would cover for the keeper): the keeper's renewal skips the
    locked row instead of waiting behind it with every other lease."""
    settings = queue.settings.model_copy(
        update={"lease_seconds": LEASE, "lease_backstop": False}
    )
    locked = asyncio.Event()

    async def locker(job: dict[str, Any]) -> dict[str, Any]:
        async with queue.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE", job["id"])
            locked.set()
            await asyncio.sleep(3 * LEASE)
        return {}

    async def canary(job: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(3 * LEASE)
        return {"attempt": job["attempts"]}

    await queue.job_service.create("locker", {}, priority=1, max_retries=0)
    bird = await queue.job_service.create("canary", {}, max_retries=3)
    await mark_index_complete(queue, "locker")
    await mark_index_complete(queue, "canary")
    runner = queue.runner(settings, concurrency=2)
    runner.register_handler("locker", locker)
    runner.register_handler("canary", canary)
    reconciler = queue.reconciler()
    assert isinstance(reconciler, Reconciler)
    rescued_canary = 0
    async with running(runner):
        await asyncio.wait_for(locked.wait(), 10)
        while (await queue.job_service.get(bird["id"]))["status"] in ("queued", "running"):
            expired = await queue.pool.fetchval(
                "SELECT lease_expires_at < now() FROM jobs WHERE id = $1", bird["id"]
            )
            rescued_canary += bool(expired)
            await reconciler.run_once()
            await asyncio.sleep(0.2)
    final = await queue.job_service.get(bird["id"])
    assert rescued_canary == 0, "the canary's lease expired while a neighbour held a row lock"
    assert (final["status"], final["output"]) == ("succeeded", {"attempt": 1}), final
