"""A worker says what it does: one INFO line per attempt that succeeded, a WARNING with the
error for one that failed, each with the job's id, type, attempt, outcome and duration."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from queue_core import PermanentJobError, Queue
from tests.support.aio import mark_index_complete, running, wait_for_status


async def test_every_finished_attempt_logs_one_line_with_its_fields(
    queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="queue_core.worker")
    good = await queue.job_service.create("t", {"ok": True})
    bad = await queue.job_service.create("t", {"ok": False})
    await mark_index_complete(queue, "t")

    async def handle(job: dict[str, Any]) -> dict[str, Any]:
        if not job["input"]["ok"]:
            raise PermanentJobError("no good")
        return {}

    runner = queue.runner()
    runner.register_handler("t", handle)
    async with running(runner):
        await wait_for_status(queue.job_service, good["id"], {"succeeded"})
        await wait_for_status(queue.job_service, bad["id"], {"failed"})
    lines = {r.job_id: r for r in caplog.records if getattr(r, "action", None) == "attempt"}
    assert set(lines) == {good["id"], bad["id"]}
    ok, failed = lines[good["id"]], lines[bad["id"]]
    assert (ok.levelno, ok.getMessage(), ok.outcome) == (
        logging.INFO,
        "attempt succeeded",
        "succeeded",
    )
    assert (ok.job_type, ok.attempt) == ("t", 1) and ok.duration_ms >= 0
    assert (failed.levelno, failed.outcome) == (logging.WARNING, "failed")
    assert failed.error == "PermanentJobError: no good"
