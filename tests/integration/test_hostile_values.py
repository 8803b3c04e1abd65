"""Values that Postgres, the drivers or the reader would choke on fail only their own job:
producers refuse them with the reason, a refused outcome row is written apart from its
batch, a stored value that cannot be read back fails its job and nothing else, and plain
function handlers run in threads under the same rules as async ones."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from queue_core import InvalidJob, Queue
from queue_core.models import UNDECODABLE, Attempt
from queue_core.worker.executor import Outcome, OutcomeKind
from queue_core.worker.outcomes import UNSTORABLE_ERROR, OutcomeBuffer
from tests.support.aio import mark_index_complete, running, wait_for_status


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({"s": "a\x00b"}, "NUL"),
        ({"s": "\ud800"}, "lone UTF-16 surrogate"),
        ({"n": 10**200}, "number longer than 100"),
        ({"deep": json.loads("[" * 70 + "]" * 70)}, "nested deeper than 64"),
    ],
)
async def test_create_and_create_many_refuse_what_cannot_be_stored(
    queue: Queue, value: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidJob, match=reason):
        await queue.job_service.create("t", value)
    with pytest.raises(InvalidJob, match=reason):
        await queue.job_service.create_many(
            [{"job_type": "t", "input": {"ok": 1}}, {"job_type": "t", "input": value}]
        )
    assert await queue.pool.fetchval("SELECT count(*) FROM jobs") == 0


async def _running_jobs(queue: Queue, count: int) -> list[Attempt]:
    jobs = [await queue.job_service.create("t", {"n": n}) for n in range(count)]
    ids = [uuid.UUID(j["id"]) for j in jobs]
    await queue.pool.execute(
        "UPDATE jobs SET status = 'running', attempts = 1, lease_owner = 'w/1',"
        " lease_expires_at = now() + interval '1 minute' WHERE id = ANY($1)",
        ids,
    )
    return [Attempt(i, 1, "w/1") for i in ids]


async def test_an_outcome_postgres_refuses_fails_only_its_own_job(queue: Queue) -> None:
    attempts = await _running_jobs(queue, 5)
    buffer = OutcomeBuffer(
        queue.store, queue.index, "w", flush_interval=1, batch_max=100, on_written=lambda _: None
    )
    for n, attempt in enumerate(attempts):
        # "{" is not JSON: Postgres refuses the whole statement for this one row
        output = "{" if n == 2 else json.dumps({"n": n})
        await buffer.add(Outcome(attempt, "t", OutcomeKind.SUCCEEDED, output_json=output))
    await buffer.flush()
    rows = await queue.pool.fetch("SELECT id, status, output, last_error FROM jobs")
    by_id = {r["id"]: r for r in rows}
    statuses = [by_id[a.id]["status"] for a in attempts]
    assert statuses == ["succeeded", "succeeded", "failed", "succeeded", "succeeded"]
    assert by_id[attempts[2].id]["last_error"] == UNSTORABLE_ERROR
    assert by_id[attempts[4].id]["output"] == {"n": 4}


async def test_a_stored_input_that_cannot_be_read_back_fails_only_its_job(queue: Queue) -> None:
    """A row written before the limits existed (or by hand): nested 200 deep. It is claimed
    in one batch with good jobs; only it fails, and listing and reading it still work."""
    good = [await queue.job_service.create("t", {"n": n}) for n in range(4)]
    bad = await queue.job_service.create("t", {"n": 99})
    deep = "[" * 200 + "]" * 200
    await queue.pool.execute(
        "UPDATE jobs SET input = $1::jsonb WHERE id = $2", f'{{"x": {deep}}}', uuid.UUID(bad["id"])
    )
    await mark_index_complete(queue, "t")
    ran: list[str] = []

    async def handle(job: dict[str, Any]) -> dict[str, Any]:
        ran.append(job["id"])
        return {}

    runner = queue.runner()
    runner.register_handler("t", handle)
    async with running(runner):
        failed = await wait_for_status(queue.job_service, bad["id"], {"failed"})
        for job in good:
            await wait_for_status(queue.job_service, job["id"], {"succeeded"})
    assert "InvalidInput: the stored input cannot be read back" in failed["last_error"]
    assert UNDECODABLE in failed["input"]
    assert sorted(ran) == sorted(j["id"] for j in good)  # its handler never saw it
    listed = await queue.job_service.list_jobs(user_id=None, limit=10)
    assert len(listed) == 5


async def test_plain_function_handlers_run_in_threads_with_timeouts_and_retries(
    queue: Queue,
) -> None:
    """A plain function runs off the event loop; past its timeout its attempt fails at
    once, and its retry waits until the thread has returned (never two runs at once)."""
    quick = await queue.job_service.create("sync", {"sleep": 0})
    slow = await queue.job_service.create("sync", {"sleep": 1.5}, max_retries=1)
    await mark_index_complete(queue, "sync")
    threads: list[str] = []
    active: dict[str, int] = {}
    overlaps: list[str] = []
    lock = threading.Lock()

    def handle(job: dict[str, Any]) -> dict[str, Any]:
        with lock:
            threads.append(threading.current_thread().name)
            active[job["id"]] = active.get(job["id"], 0) + 1
            if active[job["id"]] > 1:
                overlaps.append(job["id"])
        try:
            if job["attempts"] == 1:
                time.sleep(job["input"]["sleep"])
            return {"attempt": job["attempts"]}
        finally:
            with lock:
                active[job["id"]] -= 1

    runner = queue.runner(queue.settings.model_copy(update={"retry_base_seconds": 0.01}))
    runner.register_handler("sync", handle, timeout=0.5)
    async with running(runner):
        done = await wait_for_status(queue.job_service, quick["id"], {"succeeded"})
        retried = await wait_for_status(queue.job_service, slow["id"], {"succeeded"}, 15)
    assert done["output"] == {"attempt": 1}
    assert (retried["attempts"], retried["output"]) == (2, {"attempt": 2})
    assert "TimeoutError: handler ran longer than 0.5s" in retried["last_error"]
    assert all(name.startswith("hybridq-handler-sync") for name in threads), threads
    assert not overlaps


async def test_a_pool_of_one_connection_runs_jobs_and_reconciles(queue: Queue) -> None:
    """The long-held sessions (LISTEN, the reconcile lock, the lease keeper) have
    connections of their own: one pooled connection is enough for the statements."""
    settings = queue.settings.model_copy(update={"pool_max_size": 1, "pool_min_size": 1})
    from queue_core import connect

    async with connect(settings, validate=False) as small:
        jobs = await small.job_service.create_many(
            [{"job_type": "t", "input": {"n": n}} for n in range(5)]
        )
        result = await asyncio.wait_for(small.reconciler().run_once(), 10)
        assert not result.skipped

        async def handle(job: dict[str, Any]) -> dict[str, Any]:
            return {}

        runner = small.runner()
        runner.register_handler("t", handle)
        async with running(runner):
            for job in jobs:
                await wait_for_status(small.job_service, job["id"], {"succeeded"}, 10)


async def test_a_host_clock_step_neither_delays_a_scheduled_job_nor_makes_the_worker_spin(
    queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host's clock jumps an hour ahead while the worker waits for a job due in 1.5 s
    (after it read Postgres' clock): the job still starts on time, after a handful of
    claims, not thousands."""
    due = datetime.now(UTC) + timedelta(seconds=1.5)
    job = await queue.job_service.create("t", {}, scheduled_for=due)
    await mark_index_complete(queue, "t")
    claims = 0
    claim_jobs = queue.store.claim_jobs

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal claims
        claims += 1
        return await claim_jobs(*args, **kwargs)

    monkeypatch.setattr(queue.store, "claim_jobs", counted)

    async def handle(job: dict[str, Any]) -> dict[str, Any]:
        return {}

    runner = queue.runner()
    runner.register_handler("t", handle)
    async with running(runner):
        await asyncio.sleep(0.3)  # the worker has read Postgres' clock by now
        real_time = time.time
        monkeypatch.setattr(time, "time", lambda: real_time() + 3600)  # the step
        done = await wait_for_status(queue.job_service, job["id"], {"succeeded"}, 10)
    late = (done["started_at"] - due).total_seconds()
    assert -0.05 < late < 1.0, late
    assert claims < 20, f"{claims} claim statements for one scheduled job"
