"""Claiming ahead against real PostgreSQL and Redis: jobs a worker claimed ahead of its free
slots never get stuck there, and a stopping worker gives them back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from queue_core import BackendUnavailable, JobRunnerService, Queue
from tests.support.aio import mark_index_complete, running, wait_until


def worker(queue: Queue, concurrency: int, **settings: Any) -> JobRunnerService:
    return queue.runner(queue.settings.model_copy(update=settings), concurrency=concurrency)


async def statuses(queue: Queue) -> dict[str, tuple[str, int]]:
    rows = await queue.pool.fetch("SELECT id::text AS id, status, attempts FROM jobs")
    return {r["id"]: (r["status"], r["attempts"]) for r in rows}


async def test_jobs_claimed_ahead_behind_a_long_job_go_to_another_worker(queue: Queue) -> None:
    """One slot, room for two more: the worker claims three jobs at once. The first runs
    long, so the other two go back to the queue after PREFETCH_MAX_WAIT_SECONDS, uncounted,
    and an idle worker runs them while the first is still running."""
    first = await queue.job_service.create("slow", {"n": 0})
    others = [await queue.job_service.create("slow", {"n": n}) for n in (1, 2)]
    await mark_index_complete(queue, "slow")
    release_first = asyncio.Event()
    ran_by: dict[str, str] = {}

    def handler(name: str) -> Any:
        async def handle(job: dict[str, Any]) -> dict[str, Any]:
            ran_by[job["id"]] = name
            if job["id"] == first["id"]:
                await release_first.wait()
            return {}

        return handle

    busy = worker(queue, 1, prefetch=2)
    busy.register_handler("slow", handler("busy"))
    async with running(busy):
        await wait_until(lambda: _true(first["id"] in ran_by))
        held = await statuses(queue)
        assert all(held[j["id"]] == ("running", 1) for j in others), held  # claimed ahead

        async def given_back() -> bool:
            now = await statuses(queue)
            return all(now[j["id"]] == ("queued", 0) for j in others)

        await wait_until(given_back, timeout=5)
        idle = worker(queue, 5)
        idle.register_handler("slow", handler("idle"))
        async with running(idle):
            await wait_until(lambda: _true(all(j["id"] in ran_by for j in others)), timeout=10)
        assert {ran_by[j["id"]] for j in others} == {"idle"}
        assert ran_by[first["id"]] == "busy" and not release_first.is_set()
        release_first.set()
    final = await statuses(queue)
    assert final[first["id"]] == ("succeeded", 1)
    assert all(final[j["id"]] == ("succeeded", 1) for j in others)


async def stuck_worker(queue: Queue, prefetch: int) -> tuple[JobRunnerService, asyncio.Event]:
    """One slot, taken by the first job for a minute; ``prefetch`` more may be claimed."""
    started = asyncio.Event()

    async def stuck(job: dict[str, Any]) -> dict[str, Any]:
        started.set()
        await asyncio.sleep(60)
        return {}

    runner = worker(queue, 1, prefetch=prefetch, shutdown_grace_seconds=0.1)
    runner.register_handler("stuck", stuck)
    return runner, started


async def test_stopping_worker_gives_back_jobs_claimed_ahead(queue: Queue) -> None:
    jobs = [await queue.job_service.create("stuck", {"n": n}) for n in range(3)]
    await mark_index_complete(queue, "stuck")
    runner, started = await stuck_worker(queue, prefetch=2)
    async with running(runner):
        await asyncio.wait_for(started.wait(), 5)
        held = await statuses(queue)
        assert sorted(held.values()) == [("running", 1)] * 3  # one running, two ahead
    final = await statuses(queue)
    assert sorted(final.values()) == [("queued", 0)] * 3
    claimed = await queue.index.claim_ids("stuck", 10**13, 10)
    assert sorted(map(str, claimed.ids)) == sorted(j["id"] for j in jobs)


async def held_while_stuck(queue: Queue, prefetch: int) -> dict[str, tuple[str, int]]:
    """(status, attempts) of every job while a worker's only slot is stuck."""
    runner, started = await stuck_worker(queue, prefetch)
    async with running(runner):
        await asyncio.wait_for(started.wait(), 5)
        await asyncio.sleep(0.3)  # room for a claim ahead, if the worker makes one
        return await statuses(queue)


async def test_no_claiming_ahead_when_prefetch_is_zero(queue: Queue) -> None:
    for n in range(3):
        await queue.job_service.create("stuck", {"n": n})
    await mark_index_complete(queue, "stuck")
    held = await held_while_stuck(queue, prefetch=0)
    assert sorted(held.values()) == [("queued", 0), ("queued", 0), ("running", 1)]


async def test_a_job_on_its_last_attempt_is_never_claimed_ahead(queue: Queue) -> None:
    """A worker killed while holding claimed-ahead jobs costs them an attempt: a job with no
    retry left must not be held (it would fail without having run), so it stays queued
    while the only slot is busy."""
    last = [await queue.job_service.create("stuck", {"n": n}, max_retries=0) for n in range(3)]
    spare = await queue.job_service.create("stuck", {"n": 3}, max_retries=1)
    await mark_index_complete(queue, "stuck")
    held = await held_while_stuck(queue, prefetch=3)
    assert held[last[0]["id"]] == ("running", 1)  # in the slot
    assert [held[j["id"]] for j in last[1:]] == [("queued", 0)] * 2
    assert held[spare["id"]] == ("running", 1)  # claimed ahead: a retry remains


async def test_stale_jobs_postgres_will_not_take_back_wait_and_run_here(
    queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the release of stale claimed-ahead jobs fails, they are neither dropped (their
    leases renewed with nobody to run them) nor lost: they wait here again and run."""
    from queue_core.worker import release

    monkeypatch.setattr(release, "RELEASE_TRIES", 1)
    jobs = [await queue.job_service.create("slow", {"n": n}) for n in range(3)]
    await mark_index_complete(queue, "slow")
    release_first = asyncio.Event()
    ran: list[str] = []

    async def handle(job: dict[str, Any]) -> dict[str, Any]:
        ran.append(job["id"])
        if job["id"] == jobs[0]["id"]:
            await release_first.wait()
        return {}

    async def refuse(attempts: Any, delay_seconds: float = 0.0) -> Any:
        raise BackendUnavailable("postgres", "refusing releases in this test")

    busy = worker(queue, 1, prefetch=2)
    monkeypatch.setattr(busy._store, "release_jobs", refuse)
    busy.register_handler("slow", handle)
    async with running(busy):
        await wait_until(lambda: _true(ran == [jobs[0]["id"]]))
        await asyncio.sleep(1.3)  # stale after 1 s; the release fails
        held = await statuses(queue)
        assert all(held[j["id"]] == ("running", 1) for j in jobs[1:]), held
        release_first.set()
        await wait_until(lambda: _true(len(ran) == 3), timeout=5)
    final = await statuses(queue)
    assert sorted(final.values()) == [("succeeded", 1)] * 3


async def _true(value: bool) -> bool:
    return value
