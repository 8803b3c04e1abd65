"""No handler can hurt its worker. Every kind of careless or hostile handler (values
Postgres refuses, odd raises, exits, a blocked event loop, swallowed cancellation, huge or
deep output, plain functions that overrun) runs beside canary jobs in the same workers:
the hostile attempt ends failed with a readable last_error, every canary succeeds exactly
once, no job runs twice, and the workers keep running until they are asked to stop, then
stop within their budget with exit code 0."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from queue_core import Queue
from tests.support.fleet import WorkerFleet, reconciler_running, short_lease
from tests.support.hostile import ASYNC_KINDS, EXPECTED_ERRORS, SYNC_KINDS
from tests.support.monitor import JobsMonitor

CANARIES = 40
CANARY_SECONDS = 3.0  # longer than the 2 s lease: the leases must be renewed meanwhile


def executions(record: Path) -> list[tuple[str, int, int, float, float]]:
    """(job id, attempt, pid, start, end) of every handler run that ended."""
    if not record.exists():
        return []
    rows = [line.split() for line in record.read_text().splitlines() if line]
    return [(r[0], int(r[1]), int(r[2]), float(r[3]), float(r[4])) for r in rows]


async def create_mixed(queue: Queue) -> tuple[dict[str, str], list[str]]:
    """Every hostile kind (priority 1: they start first) and the canaries; returns
    {job id: kind} and the canary ids."""
    kinds = {}
    for kind in [*ASYNC_KINDS, "swallows_cancellation", "widens_its_own_retries"]:
        job = await queue.job_service.create("hostile", {"kind": kind}, None, 1, 0)
        kinds[job["id"]] = kind
    for kind in SYNC_KINDS:
        job = await queue.job_service.create("hostile_sync", {"kind": kind}, None, 1, 0)
        kinds[job["id"]] = kind
    canaries = await queue.job_service.create_many(
        [
            {"job_type": "canary", "input": {"n": n, "sleep": CANARY_SECONDS}}
            for n in range(CANARIES)
        ]
    )
    return kinds, [c["id"] for c in canaries]


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_hostile_handlers_fail_their_own_attempt_and_nothing_else(
    queue: Queue, tmp_path: Path
) -> None:
    settings = short_lease(queue.settings)
    record = tmp_path / "executions.log"
    kinds, canaries = await create_mixed(queue)
    monitor = JobsMonitor(settings)
    try:
        async with (
            reconciler_running(queue, settings) as reconciler,
            WorkerFleet(
                settings,
                record,
                tmp_path,
                concurrency=20,
                handlers="tests.support.hostile",
                HYBRIDQ_LOG_JSON="true",  # the structured fields: job ids in the stall log
            ) as fleet,
        ):
            workers = fleet.start(2)
            settled = await monitor.wait_settled(timeout=90)
            rows = await monitor.fetch_retrying(
                "SELECT id::text AS id, status, attempts, last_error FROM jobs"
            )
            alive = [p.pid for p in fleet.alive]
            stop_seconds = await asyncio.to_thread(_stop_and_time, fleet, workers)
    finally:
        await monitor.close()
    jobs = {r["id"]: r for r in rows}
    runs = Counter(job_id for job_id, *_ in executions(record))
    report = f"settled={settled} reconciler={reconciler}\n" + fleet.log_text()[-6000:]

    assert settled, report
    for job_id, kind in kinds.items():
        job = jobs[job_id]
        assert job["status"] == "failed", (kind, dict(job), report)
        assert EXPECTED_ERRORS[kind] in (job["last_error"] or ""), (kind, job["last_error"])
        assert runs[job_id] == 1, (kind, runs[job_id])
    assert [jobs[c]["status"] for c in canaries] == ["succeeded"] * CANARIES, report
    assert [jobs[c]["attempts"] for c in canaries] == [1] * CANARIES
    assert [runs[c] for c in canaries] == [1] * CANARIES, "a canary ran twice"
    assert reconciler.leases_rescued == reconciler.leases_failed == 0, reconciler
    assert sorted(alive) == sorted(p.pid for p in workers), "a worker exited on its own"
    assert [p.returncode for p in workers] == [0, 0], report
    assert max(stop_seconds) < 10, stop_seconds
    blocker = next(i for i, k in kinds.items() if k == "blocks_the_loop")
    assert "event loop blocked by a handler" in fleet.log_text(), report
    assert blocker in fleet.log_text(), "the stall log names the blocking job"


def _stop_and_time(fleet: WorkerFleet, workers: list[subprocess.Popen[bytes]]) -> list[float]:
    """SIGTERM every worker; the seconds each took to exit."""
    started = time.monotonic()
    for proc in workers:
        fleet.terminate(proc)
    took = []
    for proc in workers:
        proc.wait(60)
        took.append(time.monotonic() - started)
    return took


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("stubbornness", [{"swallow": 8}, {"block": 8}])
async def test_a_stopping_worker_does_not_wait_for_a_handler_that_will_not_stop(
    queue: Queue, tmp_path: Path, stubbornness: dict[str, float]
) -> None:
    """SIGTERM with --grace 1 while a handler ignores cancellation (or blocks the event
    loop): the worker exits 0 within its budget instead of waiting for it. The stubborn
    job is not given back (its handler never stopped): it runs again only once that worker
    is gone and its lease expired, so never on two workers at once. A canary that finishes
    in the grace (beside the one that swallows cancellation) is recorded, not given back."""
    settings = short_lease(queue.settings)
    record = tmp_path / "executions.log"
    stubborn = await queue.job_service.create("stubborn", stubbornness, None, 1, 1)
    monitor = JobsMonitor(settings)
    canary = None
    try:
        async with (
            reconciler_running(queue, settings),
            WorkerFleet(
                settings,
                record,
                tmp_path,
                concurrency=5,
                handlers="tests.support.hostile",
                HYBRIDQ_SHUTDOWN_GRACE_SECONDS="1",
            ) as fleet,
        ):
            [first] = fleet.start(1)
            await monitor.wait_for_running(stubborn["id"], timeout=20)
            if "swallow" in stubbornness:  # the loop is free: a canary runs beside it
                canary = await queue.job_service.create("canary", {"n": 1, "sleep": 0.5})
                await monitor.wait_for_running(canary["id"], timeout=20)
            else:
                await asyncio.sleep(1.5)  # the handler blocks the loop by now
            [took] = await asyncio.to_thread(_stop_and_time, fleet, [first])
            exited_at = time.time()
            held = await monitor.fetch_retrying(
                "SELECT status, attempts FROM jobs WHERE id = $1::uuid", stubborn["id"]
            )
            fleet.start(1)  # picks the stubborn job up once its lease is rescued
            settled = await monitor.wait_settled(timeout=60)
            rows = await monitor.fetch_retrying("SELECT id::text AS id, status, attempts FROM jobs")
    finally:
        await monitor.close()
    report = fleet.log_text()[-6000:]
    assert first.returncode == 0, report
    assert took < 6, (took, report)  # grace 1 s + 1 s to settle + the last write
    assert [(r["status"], r["attempts"]) for r in held] == [("running", 1)], report
    assert settled, report
    final = {r["id"]: (r["status"], r["attempts"]) for r in rows}
    if canary is not None:
        assert final[canary["id"]] == ("succeeded", 1), report  # written, not given back
    assert final[stubborn["id"]] == ("succeeded", 2), report
    second = [e for e in executions(record) if e[0] == stubborn["id"] and e[1] == 2]
    assert second and second[0][3] > exited_at, "ran again before the first worker was gone"
