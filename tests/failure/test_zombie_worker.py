"""A zombie: a worker whose lease expired and was rescued while its handler kept running
(its heartbeats stopped reaching Postgres). Whatever it does later, the newer attempt's
result stands: its outcome is rejected by the fence, or its next heartbeat cancels it.

Deterministic: the zombie's lease keeper renews through a store whose ``extend_leases``
hangs until the test lets it through, the lease is expired by an UPDATE rather than by
waiting, and the rescue is one ``Reconciler.run_once()``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from typing import Any

import pytest

from queue_core import JobRunnerService, Queue
from queue_core.index import IndexRepair
from queue_core.maintenance.reconciler import Reconciler
from queue_core.settings import Settings
from queue_core.store.pg_store import PgStore
from tests.support.aio import mark_index_complete, running, wait_for_status, wait_until
from tests.support.fleet import short_lease
from tests.support.workers import lease_store_for

JOB_TYPE = "zombie_check"


class StalledHeartbeats:
    """The lease keeper's store, except that renewals (``extend_leases``) hang until
    ``resume`` is set: a stalled connection or a partition that lets the handler run on
    unnoticed. The keeper runs in a thread of its own: ``resume`` is a threading.Event."""

    def __init__(self) -> None:
        self.resume = threading.Event()
        self._store: PgStore | None = None

    def wrap(self, store: PgStore) -> StalledHeartbeats:
        self._store = store
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def extend_leases(self, *args: Any, **kwargs: Any) -> set[uuid.UUID]:
        # A threading.Event (the keeper has its own loop): polled, not awaited.
        while not self.resume.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        assert self._store is not None
        return await self._store.extend_leases(*args, **kwargs)


def cut_off(settings: Settings) -> Settings:
    """A worker cut off from Postgres: its lease backstop could not renew either (here it
    would, and the expired lease would come back before the rescue)."""
    return settings.model_copy(update={"lease_backstop": False})


async def _expire_and_rescue(queue: Queue, job_id: str) -> None:
    """The zombie's lease runs out (no heartbeat arrives) and the reconciler rescues it."""
    await queue.pool.execute(
        "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
        uuid.UUID(job_id),
    )
    reconciler = Reconciler(
        queue.store, queue.index, IndexRepair(queue.index), short_lease(queue.settings)
    )
    result = await reconciler.run_once()
    assert result.leases_rescued == 1, result
    job = await queue.job_service.get(job_id)
    assert (job["status"], job["attempts"], job["lease_owner"]) == ("queued", 1, None), job


async def _second_worker_completes(queue: Queue, job_id: str) -> dict[str, Any]:
    async def second_attempt(job: dict[str, Any]) -> dict[str, Any]:
        return {"by": "second"}

    settings = short_lease(queue.settings)
    second = JobRunnerService(
        queue.store,
        queue.index,
        settings,
        lease_store=lease_store_for(settings),
        concurrency=1,
        worker_id="second-worker",
    )
    second.register_handler(JOB_TYPE, second_attempt)
    async with running(second):
        done = await wait_for_status(queue.job_service, job_id, {"succeeded", "failed"})
    assert (done["status"], done["attempts"], done["output"]) == ("succeeded", 2, {"by": "second"})
    return done


def _lease_lost(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == message]


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_zombie_worker_whose_lease_expired_cannot_overwrite_newer_attempt(
    queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="queue_core")
    job_id = (await queue.job_service.create(JOB_TYPE, {"n": 1}))["id"]
    await mark_index_complete(queue, JOB_TYPE)
    zombie_running, zombie_may_return = asyncio.Event(), asyncio.Event()

    async def first_attempt(job: dict[str, Any]) -> dict[str, Any]:
        zombie_running.set()
        await zombie_may_return.wait()
        return {"by": "zombie"}

    settings = cut_off(short_lease(queue.settings))
    heartbeats = StalledHeartbeats()
    zombie = JobRunnerService(
        queue.store,
        queue.index,
        settings,
        lease_store=lease_store_for(settings, heartbeats.wrap),
        concurrency=1,
        worker_id="zombie-worker",
    )
    zombie.register_handler(JOB_TYPE, first_attempt)
    async with running(zombie):
        await asyncio.wait_for(zombie_running.wait(), 10)
        await _expire_and_rescue(queue, job_id)
        done = await _second_worker_completes(queue, job_id)

        zombie_may_return.set()  # the zombie wakes up and reports {"by": "zombie"}

        async def zombie_returned() -> bool:
            return zombie.running_count == 0  # its outcome is in the buffer

        await wait_until(zombie_returned, timeout=10)
        heartbeats.resume.set()  # let the keeper's last renewal through: a quick stop
    # The zombie has stopped: run() flushed its outcome buffer before returning.

    final = await queue.job_service.get(job_id)
    assert final["status"] == "succeeded"
    assert final["output"] == {"by": "second"}
    assert (final["attempts"], final["finished_at"]) == (2, done["finished_at"])
    [rejected] = _lease_lost(caplog, "lease lost: outcome discarded")
    fields = ("job_id", "attempt", "worker_id", "outcome")
    assert tuple(getattr(rejected, f) for f in fields) == (job_id, 1, "zombie-worker", "succeeded")


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_zombie_handler_is_cancelled_by_its_next_renewal_after_the_rescue(
    queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="queue_core")
    job_id = (await queue.job_service.create(JOB_TYPE, {"n": 1}))["id"]
    await mark_index_complete(queue, JOB_TYPE)
    zombie_running, zombie_cancelled = asyncio.Event(), asyncio.Event()

    async def first_attempt(job: dict[str, Any]) -> dict[str, Any]:
        zombie_running.set()
        try:
            await asyncio.Event().wait()  # would run forever
        except asyncio.CancelledError:
            zombie_cancelled.set()
            raise
        return {"by": "zombie"}

    settings = cut_off(short_lease(queue.settings))
    heartbeats = StalledHeartbeats()
    zombie = JobRunnerService(
        queue.store,
        queue.index,
        settings,
        lease_store=lease_store_for(settings, heartbeats.wrap),
        concurrency=1,
        worker_id="zombie-worker",
    )
    zombie.register_handler(JOB_TYPE, first_attempt)
    async with running(zombie) as zombie_task:
        await asyncio.wait_for(zombie_running.wait(), 10)
        await _expire_and_rescue(queue, job_id)
        # No new claims: the rescued job is left for the second worker. (The shutdown grace,
        # 2 s, would cancel the handler too, but later, and without the lease_lost log.)
        zombie.stop()
        heartbeats.resume.set()  # renewals reach Postgres again: the next finds it lost
        await asyncio.wait_for(zombie_cancelled.wait(), 2)
        await asyncio.wait_for(zombie_task, 10)
    await _second_worker_completes(queue, job_id)

    [cancelled] = _lease_lost(caplog, "lease lost: handler cancelled")
    fields = ("job_id", "attempt", "worker_id")
    assert tuple(getattr(cancelled, f) for f in fields) == (job_id, 1, "zombie-worker")
    assert not _lease_lost(caplog, "lease lost: outcome discarded")
    final = await queue.job_service.get(job_id)
    assert (final["status"], final["output"]) == ("succeeded", {"by": "second"})
