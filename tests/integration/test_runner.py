"""JobRunnerService against real PostgreSQL and Redis: order, retries, fencing, shutdown."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from queue_core import PermanentJobError, Queue, keys
from queue_core.models import Attempt, Completion, Failure
from tests.support.aio import mark_index_complete, running, wait_for_status, wait_until


async def count_status(queue: Queue, status: str) -> int:
    return int(await queue.pool.fetchval("SELECT count(*) FROM jobs WHERE status = $1", status))


async def test_one_worker_starts_jobs_in_priority_due_creation_order(queue: Queue) -> None:
    """2,000 jobs, random priorities, some due seconds ahead; concurrency 1. Each start must
    be the best job due at that moment, and none may start before its time."""
    rng = random.Random(7)
    now = datetime.now(UTC)
    specs: list[dict[str, Any]] = []
    for i in range(2000):
        spec: dict[str, Any] = {
            "job_type": "ordered",
            "input": {"i": i},
            "priority": rng.choice([-5, 0, 0, 1, 3, 10]),
        }
        if rng.random() < 0.2:
            spec["scheduled_for"] = now + timedelta(milliseconds=rng.randint(200, 2500))
        specs.append(spec)
    for start in range(0, 2000, 250):  # several batches: several creation times
        await queue.job_service.create_many(specs[start : start + 250])

    started: list[str] = []

    async def handler(job: dict[str, Any]) -> dict[str, Any]:
        started.append(job["id"])
        return {}

    runner = queue.runner(concurrency=1)
    runner.register_handler("ordered", handler)
    async with running(runner):
        await wait_until(lambda: _done(queue, 2000), timeout=60)

    rows = await queue.pool.fetch(
        "SELECT id::text AS id, priority, scheduled_for, started_at FROM jobs"
    )
    by_id = {r["id"]: r for r in rows}
    assert len(started) == 2000 and len(set(started)) == 2000

    early = [r["id"] for r in rows if r["started_at"] < r["scheduled_for"]]
    assert not early, f"{len(early)} jobs started before their scheduled time"

    def rank(r: Any) -> tuple[int, datetime, str]:
        return (-r["priority"], r["scheduled_for"], r["id"])

    # Walk the starts in order; the job started must outrank every job not yet started that
    # was already due a little before (the claim reads the clock just before the UPDATE).
    slack = timedelta(milliseconds=50)
    pending = sorted(rows, key=rank)
    violations = []
    for job_id in started:
        r = by_id[job_id]
        due_then = [p for p in pending if p["scheduled_for"] <= r["started_at"] - slack]
        if due_then and rank(due_then[0]) < rank(r):
            violations.append((job_id, due_then[0]["id"]))
        pending.remove(r)
    assert not violations, f"{len(violations)} out-of-order starts, first: {violations[:3]}"


async def _done(queue: Queue, n: int) -> bool:
    return await count_status(queue, "succeeded") >= n


async def test_failing_handler_runs_one_plus_max_retries_times_with_growing_delays(
    queue: Queue,
) -> None:
    runs: list[float] = []

    async def always_fails(job: dict[str, Any]) -> dict[str, Any]:
        runs.append(time.monotonic())
        raise RuntimeError(f"attempt {job['attempts']} broke")

    job = await queue.job_service.create("flaky", {}, max_retries=3)
    runner = queue.runner(concurrency=1)
    runner.register_handler("flaky", always_fails)
    async with running(runner):
        final = await wait_for_status(queue.job_service, job["id"], {"failed"})
    assert len(runs) == 4
    assert final["attempts"] == 4
    assert "RuntimeError: attempt 4 broke" in final["last_error"]
    gaps = [b - a for a, b in zip(runs, runs[1:], strict=False)]
    # base 0.05 s, equal jitter: each delay is at least the previous one's ceiling.
    assert gaps[0] >= 0.025 and gaps[2] > gaps[0], gaps


async def test_permanent_job_error_fails_after_one_attempt(queue: Queue) -> None:
    async def refuses(job: dict[str, Any]) -> dict[str, Any]:
        raise PermanentJobError("bad message id")

    job = await queue.job_service.create("perm", {}, max_retries=5)
    runner = queue.runner()
    runner.register_handler("perm", refuses)
    async with running(runner):
        final = await wait_for_status(queue.job_service, job["id"], {"failed"})
    assert final["attempts"] == 1
    assert final["last_error"].startswith("PermanentJobError: bad message id")


async def test_max_retries_zero_never_retries(queue: Queue) -> None:
    calls = 0

    async def fails(job: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        raise ValueError("no")

    job = await queue.job_service.create("once", {}, max_retries=0)
    runner = queue.runner()
    runner.register_handler("once", fails)
    async with running(runner):
        final = await wait_for_status(queue.job_service, job["id"], {"failed"})
        await asyncio.sleep(0.2)
    assert calls == 1 and final["attempts"] == 1


async def test_handler_returning_a_non_dict_fails_the_attempt(queue: Queue) -> None:
    async def returns_list(job: dict[str, Any]) -> Any:
        return [1, 2]

    job = await queue.job_service.create("bad_return", {}, max_retries=0)
    runner = queue.runner()
    runner.register_handler("bad_return", returns_list)
    async with running(runner):
        final = await wait_for_status(queue.job_service, job["id"], {"failed"})
    assert "must return a dict or None, got list" in final["last_error"]


async def test_handler_output_is_stored_and_none_is_allowed(queue: Queue) -> None:
    async def echo(job: dict[str, Any]) -> dict[str, Any] | None:
        return None if job["input"].get("none") else {"echo": job["input"], "user": job["user_id"]}

    a = await queue.job_service.create("echo", {"x": 1}, user_id="u1")
    b = await queue.job_service.create("echo", {"none": True})
    runner = queue.runner()
    runner.register_handler("echo", echo)
    async with running(runner):
        fa = await wait_for_status(queue.job_service, a["id"], {"succeeded"})
        fb = await wait_for_status(queue.job_service, b["id"], {"succeeded"})
    assert fa["output"] == {"echo": {"x": 1}, "user": "u1"}
    assert fb["output"] is None and fa["finished_at"] is not None


async def test_redis_ids_of_cancelled_or_finished_jobs_are_never_executed(queue: Queue) -> None:
    executed: list[str] = []

    async def handler(job: dict[str, Any]) -> dict[str, Any]:
        executed.append(job["id"])
        return {}

    cancelled = await queue.job_service.create("stale", {})
    finished = await queue.job_service.create("stale", {})
    await queue.pool.execute(
        "UPDATE jobs SET status = 'cancelled' WHERE id = $1", uuid.UUID(cancelled["id"])
    )
    await queue.pool.execute(
        "UPDATE jobs SET status = 'succeeded' WHERE id = $1", uuid.UUID(finished["id"])
    )
    ghost = uuid.uuid4()  # an id Postgres never heard of
    ready = keys.type_keys(queue.settings.namespace, "stale").ready
    await queue.redis.zadd(ready, {keys.ready_member(ghost): 0})
    live = await queue.job_service.create("stale", {})
    await mark_index_complete(queue, "stale")

    runner = queue.runner()
    runner.register_handler("stale", handler)
    async with running(runner):
        await wait_for_status(queue.job_service, live["id"], {"succeeded"})
    assert executed == [live["id"]]
    assert await queue.redis.zcard(ready) == 0


async def test_scheduled_job_waits_for_its_time_then_starts_promptly(queue: Queue) -> None:
    starts: list[float] = []

    async def handler(job: dict[str, Any]) -> dict[str, Any]:
        starts.append(time.time())
        return {}

    runner = queue.runner()
    runner.register_handler("later", handler)
    async with running(runner):
        await asyncio.sleep(0.1)
        due = datetime.now(UTC) + timedelta(milliseconds=600)
        job = await queue.job_service.create("later", {}, scheduled_for=due)
        final = await wait_for_status(queue.job_service, job["id"], {"succeeded"})
    assert final["started_at"] >= final["scheduled_for"]
    # Woken by the due time, not by the idle poll (0.5 s in tests).
    assert starts[0] - due.timestamp() < 0.2


async def test_idle_worker_picks_up_a_new_job_without_polling(queue: Queue) -> None:
    picked: list[float] = []

    async def handler(job: dict[str, Any]) -> dict[str, Any]:
        picked.append(time.perf_counter())
        return {}

    runner = queue.runner()
    runner.register_handler("fast", handler)
    async with running(runner):
        await asyncio.sleep(0.3)
        latencies = []
        for _ in range(5):
            t0 = time.perf_counter()
            job = await queue.job_service.create("fast", {})
            await wait_for_status(queue.job_service, job["id"], {"succeeded"})
            latencies.append(picked[-1] - t0)
    # Functional bound only (idle poll is 0.5 s): a wake-up, not a poll, started each job.
    assert max(latencies) < 0.25, latencies


async def test_worker_claims_only_job_types_it_has_handlers_for(queue: Queue) -> None:
    async def handler(job: dict[str, Any]) -> dict[str, Any]:
        return {}

    mine = await queue.job_service.create("mine", {})
    other = await queue.job_service.create("other", {})
    runner = queue.runner()
    runner.register_handler("mine", handler)
    async with running(runner):
        await wait_for_status(queue.job_service, mine["id"], {"succeeded"})
        await asyncio.sleep(0.1)
    assert (await queue.job_service.get(other["id"]))["status"] == "queued"


async def test_completion_from_expired_lease_is_rejected(queue: Queue) -> None:
    """A zombie (old attempt) cannot overwrite the newer attempt's result."""
    job = await queue.job_service.create("z", {})
    job_id = uuid.UUID(job["id"])
    [first] = await queue.store.claim_jobs("z", [job_id], "zombie", 30)
    # The zombie's lease is rescued; another worker claims attempt 2 and succeeds.
    await queue.pool.execute(
        "UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL"
        " WHERE id = $1",
        job_id,
    )
    [second] = await queue.store.claim_jobs("z", [job_id], "fresh", 30)
    assert second["attempts"] == 2
    fresh, zombie = Attempt(job_id, 2, "fresh"), Attempt(job_id, 1, "zombie")
    assert await queue.store.complete_jobs([Completion(fresh, '{"by":"fresh"}')]) == {job_id}
    assert await queue.store.complete_jobs([Completion(zombie, '{"by":"zombie"}')]) == set()
    assert await queue.store.fail_jobs([Failure(zombie, "zombie")]) == set()
    # Same job, same attempt number, same worker, another claim: still fenced out.
    same_attempt_other_claim = Attempt(job_id, 2, "fresh-but-another-claim")
    assert await queue.store.fail_jobs([Failure(same_attempt_other_claim, "x")]) == set()
    final = await queue.job_service.get(job["id"])
    assert final["status"] == "succeeded" and final["output"] == {"by": "fresh"}


async def test_cancel_of_a_running_job_stops_its_handler_at_the_next_heartbeat(
    queue: Queue,
) -> None:
    started = asyncio.Event()
    stopped: list[str] = []

    async def slow(job: dict[str, Any]) -> dict[str, Any]:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            stopped.append(job["id"])
            raise
        return {}

    job = await queue.job_service.create("slow", {})
    runner = queue.runner()
    runner.register_handler("slow", slow)
    async with running(runner):
        await asyncio.wait_for(started.wait(), 5)
        await queue.job_service.cancel(job["id"])
        # the lease keeper renews every lease_seconds / 3 (5 s here): it finds the lease gone
        await wait_until(lambda: _true(bool(stopped)), timeout=5)
    assert (await queue.job_service.get(job["id"]))["status"] == "cancelled"


async def _true(value: bool) -> bool:
    return value


async def test_shutdown_releases_unfinished_jobs_without_counting_the_attempt(
    queue: Queue,
) -> None:
    started = asyncio.Event()

    async def stuck(job: dict[str, Any]) -> dict[str, Any]:
        started.set()
        await asyncio.sleep(60)
        return {}

    job = await queue.job_service.create("stuck", {})
    await mark_index_complete(queue, "stuck")
    settings = queue.settings.model_copy(update={"shutdown_grace_seconds": 0.2})

    runner = queue.runner(settings)
    runner.register_handler("stuck", stuck)
    async with running(runner):
        await asyncio.wait_for(started.wait(), 5)
        stopping_at = await queue.pool.fetchval("SELECT now()")
    final = await queue.job_service.get(job["id"])
    assert final["status"] == "queued" and final["attempts"] == 0
    # Its handler had started: it is due again only after the stopping worker is gone.
    assert final["scheduled_for"] >= stopping_at + timedelta(seconds=4), final
    ready = keys.type_keys(queue.settings.namespace, "stuck")
    assert await queue.redis.zcard(ready.scheduled) == 1


async def test_handler_timeout_fails_the_attempt_and_retries(queue: Queue) -> None:
    async def sleepy(job: dict[str, Any]) -> dict[str, Any]:
        if job["attempts"] == 1:
            await asyncio.sleep(5)
        return {"attempt": job["attempts"]}

    job = await queue.job_service.create("sleepy", {})
    runner = queue.runner()
    runner.register_handler("sleepy", sleepy, timeout=0.2)
    async with running(runner):
        final = await wait_for_status(queue.job_service, job["id"], {"succeeded"})
    assert final["output"] == {"attempt": 2}
    assert "TimeoutError" in final["last_error"]


def test_register_handler_rejects_what_cannot_run_and_bad_names(queue: Queue) -> None:
    runner = queue.runner()
    with pytest.raises(TypeError):
        runner.register_handler("t", "not a function")  # type: ignore[arg-type]
    runner.register_handler("plain", lambda job: {})  # a plain function runs in a thread
    assert runner.get("plain") is not None and not runner.get("plain").is_async  # type: ignore[union-attr]
    from queue_core import InvalidJob

    async def ok(job: dict[str, Any]) -> dict[str, Any]:
        return {}

    with pytest.raises(InvalidJob):
        runner.register_handler("bad type", ok)


class _In(BaseModel):
    n: int


class _Out(BaseModel):
    doubled: int


async def test_input_breaking_the_declared_model_fails_without_retry(queue: Queue) -> None:
    calls = 0

    async def double(job: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {"doubled": job["input"]["n"] * 2}

    good = await queue.job_service.create("typed", {"n": 2})
    bad = await queue.job_service.create("typed", {"n": "two"}, max_retries=5)
    runner = queue.runner()
    runner.register_handler("typed", double, input_model=_In, output_model=_Out)
    async with running(runner):
        ok = await wait_for_status(queue.job_service, good["id"], {"succeeded"})
        failed = await wait_for_status(queue.job_service, bad["id"], {"failed"})
    assert ok["output"] == {"doubled": 4}
    assert failed["attempts"] == 1 and calls == 1
    assert failed["last_error"].startswith("InvalidInput: n:")


async def test_output_breaking_the_declared_model_fails_the_attempt(queue: Queue) -> None:
    async def wrong(job: dict[str, Any]) -> dict[str, Any]:
        return {"tripled": 3}

    job = await queue.job_service.create("typed_out", {"n": 1}, max_retries=0)
    runner = queue.runner()
    runner.register_handler("typed_out", wrong, output_model=_Out)
    async with running(runner):
        final = await wait_for_status(queue.job_service, job["id"], {"failed"})
    assert "InvalidOutput: breaks its contract: doubled: Field required" in final["last_error"]
