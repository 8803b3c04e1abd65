"""What a worker logs: nothing above INFO when it starts normally, a warning when Redis
loses an index it was using."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from queue_core import Queue, keys
from tests.support.aio import mark_index_complete, running, wait_for_status

TYPES = ("alpha", "beta", "gamma")


async def ok(job: dict[str, Any]) -> dict[str, Any]:
    return {}


def warnings_from_hybridq(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{r.levelname} {r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("queue_core")
    ]


async def test_a_worker_starting_on_a_fresh_deployment_logs_no_warning(
    queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    jobs = [await queue.job_service.create(t, {}) for t in TYPES]  # no index marked yet
    runner = queue.runner()
    for job_type in TYPES:
        runner.register_handler(job_type, ok)

    async with running(runner):
        for job in jobs:
            await wait_for_status(queue.job_service, job["id"], {"succeeded"})

    assert warnings_from_hybridq(caplog) == []
    starts = [r for r in caplog.records if r.getMessage() == "claiming straight from postgres"]
    assert sorted(r.__dict__["job_type"] for r in starts) == sorted(TYPES)
    assert {r.levelno for r in starts} == {logging.INFO}


async def test_an_index_lost_while_the_worker_used_it_is_a_warning(
    queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await mark_index_complete(queue, "alpha")
    runner = queue.runner()
    runner.register_handler("alpha", ok)

    async with running(runner):
        first = await queue.job_service.create("alpha", {})
        await wait_for_status(queue.job_service, first["id"], {"succeeded"})
        await queue.redis.delete(keys.type_keys(queue.settings.namespace, "alpha").epoch)
        second = await queue.job_service.create("alpha", {})
        await wait_for_status(queue.job_service, second["id"], {"succeeded"})

    assert "WARNING queue_core.worker.claimer: claiming straight from postgres" in (
        warnings_from_hybridq(caplog)
    )
