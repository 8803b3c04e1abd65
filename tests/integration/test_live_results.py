"""Results a product can wait for: JobService.wait(), and what handlers report while they
run (progress(), emit()), against real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from queue_core import (
    InvalidJob,
    JobNotFound,
    NoCurrentJob,
    Queue,
    WaitTimeout,
    connect,
    emit,
    keys,
    progress,
)
from queue_core.index.events import read_emitted
from tests.support.aio import mark_index_complete, running, wait_until


async def test_wait_returns_the_finished_job_as_soon_as_it_is_committed(queue: Queue) -> None:
    release = asyncio.Event()

    async def handle(job: dict[str, Any]) -> dict[str, Any]:
        await release.wait()
        return {"n": job["input"]["n"]}

    job = await queue.job_service.create("t", {"n": 7})
    await mark_index_complete(queue, "t")
    runner = queue.runner()
    runner.register_handler("t", handle)
    async with running(runner):
        waiter = asyncio.create_task(queue.job_service.wait(job["id"], timeout=10))
        await asyncio.sleep(0.3)
        assert not waiter.done()
        released = time.monotonic()
        release.set()
        done = await waiter
        took = time.monotonic() - released
    assert (done["status"], done["output"]) == ("succeeded", {"n": 7})
    assert took < 1.0, took  # a live event, not a poll (the poll would still answer)


async def test_wait_times_out_with_the_current_state_and_knows_missing_jobs(
    queue: Queue,
) -> None:
    job = await queue.job_service.create("t", {})
    with pytest.raises(WaitTimeout) as raised:
        await queue.job_service.wait(job["id"], timeout=0.2)
    assert raised.value.job["status"] == "queued"
    with pytest.raises(JobNotFound):
        await queue.job_service.wait("0190d6d0-0000-7000-8000-000000000000", timeout=0.2)
    with pytest.raises(InvalidJob):
        await queue.job_service.wait(job["id"], timeout=0)


async def test_wait_for_a_cancelled_job_returns_it(queue: Queue) -> None:
    job = await queue.job_service.create("t", {})
    waiter = asyncio.create_task(queue.job_service.wait(job["id"], timeout=5))
    await asyncio.sleep(0.1)
    await queue.job_service.cancel(job["id"])
    assert (await waiter)["status"] == "cancelled"


async def test_wait_polls_postgres_when_redis_is_unreachable(queue: Queue) -> None:
    job = await queue.job_service.create("t", {})
    unreachable = queue.settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    async with connect(unreachable) as blind:
        waiter = asyncio.create_task(blind.job_service.wait(job["id"], timeout=10))
        await asyncio.sleep(0.3)
        await queue.job_service.cancel(job["id"])
        assert (await waiter)["status"] == "cancelled"


async def test_progress_and_emit_reach_live_readers_and_progress_is_kept(queue: Queue) -> None:
    proceed = asyncio.Event()

    async def handle(job: dict[str, Any]) -> dict[str, Any]:
        await progress(0.25, "a quarter")
        for word in ("Good", " morning"):
            await emit({"token": word})
        await proceed.wait()
        await progress(1.0, "done")
        return {}

    job = await queue.job_service.create("briefing", {}, user_id="u-1")
    await mark_index_complete(queue, "briefing")
    channel = keys.job_channel(queue.settings.namespace, job["id"])
    seen: list[dict[str, Any]] = []
    runner = queue.runner()
    runner.register_handler("briefing", handle)
    async with queue.hub.subscribe(channel) as live, running(runner):

        async def drained(kinds: set[str]) -> bool:
            while (message := await live.get(0.05)) is not None:
                seen.append(message)
            return kinds <= {m["kind"] + ":" + str(m.get("status")) for m in seen}

        await wait_until(lambda: drained({"status:running", "event:None", "progress:None"}))

        async def stored() -> bool:
            return (await queue.job_service.get(job["id"]))["progress"] == 0.25

        await wait_until(stored, timeout=3)  # written to the row within ~0.5 s
        proceed.set()
        await wait_until(lambda: drained({"status:succeeded"}))
    final = await queue.job_service.get(job["id"])
    assert (final["progress"], final["progress_message"]) == (1.0, "done")
    events, trimmed = await read_emitted(
        queue.redis, queue.settings.namespace, "briefing", job["id"], None
    )
    assert [data for _, data in events] == [{"token": "Good"}, {"token": " morning"}]
    assert not trimmed
    order = [m["kind"] if m["kind"] != "status" else m["status"] for m in seen]
    assert order.index("event") < order.index("succeeded"), order  # emitted events first
    live_tokens = [m["data"]["token"] for m in seen if m["kind"] == "event"]
    assert live_tokens == ["Good", " morning"]
    assert [m["id"] for m in seen if m["kind"] == "event"] == [i for i, _ in events]


async def test_a_plain_function_handler_reports_without_await(queue: Queue) -> None:
    def handle(job: dict[str, Any]) -> dict[str, Any]:
        progress(0.5, "half")  # from its thread, no await needed
        emit({"step": 1})
        return {}

    job = await queue.job_service.create("sync", {})
    await mark_index_complete(queue, "sync")
    runner = queue.runner()
    runner.register_handler("sync", handle)
    async with running(runner):
        done = await queue.job_service.wait(job["id"], timeout=10)
    assert (done["status"], done["progress"], done["progress_message"]) == (
        "succeeded",
        0.5,
        "half",
    )
    events, _ = await read_emitted(queue.redis, queue.settings.namespace, "sync", job["id"], None)
    assert [data for _, data in events] == [{"step": 1}]


async def test_reporting_outside_a_handler_or_with_bad_values_is_refused(queue: Queue) -> None:
    with pytest.raises(NoCurrentJob):
        await progress(0.5)
    with pytest.raises(NoCurrentJob):
        await emit({"a": 1})
    outcomes: list[str] = []

    async def handle(job: dict[str, Any]) -> dict[str, Any]:
        for call in (lambda: progress(1.5), lambda: progress(True), lambda: emit([1])):  # type: ignore[arg-type]
            try:
                call()
            except InvalidJob as exc:
                outcomes.append(str(exc))
        return {}

    job = await queue.job_service.create("bad", {})
    await mark_index_complete(queue, "bad")
    runner = queue.runner()
    runner.register_handler("bad", handle)
    async with running(runner):
        await queue.job_service.wait(job["id"], timeout=10)
    assert len(outcomes) == 3, outcomes
    assert "between 0 and 1" in outcomes[0] and "a number" in outcomes[1]
    assert "a JSON object" in outcomes[2]
    json.dumps(outcomes)
