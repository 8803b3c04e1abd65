"""Small async helpers for tests: run a worker in the background, wait for a condition."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from queue_core import JobRunnerService, JobService, Queue


@asynccontextmanager
async def running(runner: JobRunnerService) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(runner.run())
    try:
        yield task
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)


async def wait_until(
    condition: Callable[[], Awaitable[bool]], timeout: float = 20.0, interval: float = 0.02
) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def wait_for_status(
    service: JobService, job_id: str, statuses: set[str], timeout: float = 20.0
) -> dict:
    job: dict = {}

    async def reached() -> bool:
        nonlocal job
        job = await service.get(job_id)
        return job["status"] in statuses

    await wait_until(reached, timeout)
    return job


async def mark_index_complete(queue: Queue, *job_types: str) -> None:
    """What the reconciler does on a running deployment: (re)index these types and mark
    their Redis index complete, so workers claim through Redis from their first claim."""
    result = await queue.reconciler().rebuild_index(job_types)
    assert not result.skipped
