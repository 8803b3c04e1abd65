"""Workers die mid-run. SIGKILL: the dead worker's attempts are rescued once their lease
expires and run again (at-least-once), nothing else runs twice. SIGTERM: running jobs get
the grace period, the rest go back to the queue without counting the attempt."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from queue_core import Queue, keys
from tests.support.chaos import draining
from tests.support.fleet import WorkerFleet, reconciler_running, short_lease
from tests.support.monitor import JobsMonitor
from tests.support.recording import JOB_TYPE
from tests.support.verdict import drain_report, read_executions, verdict

JOBS = 5000
SLEEP = 0.01  # seconds per handler run: keeps ~30 jobs in flight when a worker dies


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_kill_9_workers_mid_run_loses_no_job(queue: Queue, tmp_path: Path) -> None:
    in_flight: list[int | None] = []
    async with draining(queue, tmp_path, jobs=JOBS, sleep=SLEEP) as drain:
        for fraction in (0.15, 0.4, 0.65):
            if not await drain.reach(fraction) or not drain.fleet.alive:
                break
            victim = drain.fleet.alive[0]  # the oldest: it has been claiming all along
            in_flight.append(await drain.running_on(victim))
            drain.fleet.kill9(victim)
            drain.fleet.start()  # a replacement
        report = await drain.settle("kill -9 x3", forgiven_pids=drain.fleet.killed)
    report.notes["held_by_victims"] = in_flight

    verdict(report)
    assert len(drain.fleet.killed) == 3
    assert sum(n or 0 for n in in_flight) > 0, f"the kills hit idle workers: {in_flight}"
    # Only attempts that were on a killed worker ran again.
    assert report.dup_after_kill == len(report.duplicates), report.summary()


SIGTERM_JOBS = 2000
LONG_JOBS = 400  # the first ones claimed: 0.5-2 s each, so SIGTERM finds them in flight


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_sigterm_mid_run_finishes_or_releases_in_flight_jobs(
    queue: Queue, tmp_path: Path
) -> None:
    """One worker (50 slots) runs jobs of 0.5-2 s; SIGTERM with a 0.5 s grace. It exits 0
    at once; its unfinished jobs are queued again with the attempt not counted and are back
    in the Redis index; a fresh worker then runs everything (the later jobs are short, so
    the suite stays quick)."""
    settings = short_lease(queue.settings)
    rng = random.Random(6)
    acknowledged = [
        j["id"]
        for j in await queue.job_service.create_many(
            [
                {
                    "job_type": JOB_TYPE,
                    "input": {
                        "n": n,
                        "sleep": round(rng.uniform(0.5, 2.0), 3) if n < LONG_JOBS else SLEEP,
                    },
                }
                for n in range(SIGTERM_JOBS)
            ]
        )
    ]
    await queue.reconciler().rebuild_index([JOB_TYPE])
    record = tmp_path / "executions.log"
    monitor = JobsMonitor(settings)
    try:
        async with WorkerFleet(
            settings, record, tmp_path, concurrency=50, HYBRIDQ_SHUTDOWN_GRACE_SECONDS="0.5"
        ) as fleet:
            [first] = fleet.start(1)
            started = time.monotonic()
            assert await monitor.wait_for_succeeded(60), "the worker did not get going"
            held = await _running(monitor)
            fleet.terminate(first)
            stop_began = time.monotonic()
            exit_code = await asyncio.to_thread(first.wait, 30)
            stop_seconds = time.monotonic() - stop_began

            released = await _check_after_sigterm(queue, monitor, record)
            assert exit_code == 0, f"worker exited {exit_code} on SIGTERM"
            assert stop_seconds < 5, f"SIGTERM with 0.5 s grace took {stop_seconds:.1f}s"
            assert released, f"nothing was released ({held} jobs were running at SIGTERM)"
            assert "released unfinished jobs" in fleet.log_text()

            async with reconciler_running(queue, settings):
                fleet.start(1, concurrency=50)
                settled = await monitor.wait_settled(150)
                report = await drain_report(
                    "SIGTERM, grace 0.5 s",
                    monitor,
                    record,
                    acknowledged=acknowledged,
                    drain_seconds=time.monotonic() - started,
                    settled=settled,
                    forgiven_pids={first.pid},
                    fleet=fleet,
                )
        report.notes.update(
            running_at_sigterm=held,
            released=len(released),
            worker_stop_seconds=round(stop_seconds, 2),
        )
    finally:
        await monitor.close()

    verdict(report)
    # A released job ran twice with the same attempt number: first on the stopped worker
    # (cancelled), then to completion on the fresh one. Nothing else ran twice.
    wrong = {
        job_id: runs
        for job_id, runs in report.duplicates.items()
        if job_id not in released
        or len(runs) != 2
        or runs[0].pid != first.pid
        or {r.attempt for r in runs} != {1}
    }
    assert not wrong, f"{len(wrong)} unexpected duplicates, e.g. {list(wrong.items())[:3]}"
    assert set(released) <= report.duplicates.keys()


async def _running(monitor: JobsMonitor) -> int:
    rows = await monitor.fetch_retrying("SELECT count(*) AS n FROM jobs WHERE status = 'running'")
    return int(rows[0]["n"])


async def _check_after_sigterm(queue: Queue, monitor: JobsMonitor, record: Path) -> set[str]:
    """The state a stopped worker leaves: nothing failed or running, no attempt counted that
    did not finish, and every queued job claimable through Redis. Returns the released ids
    (queued again although they started)."""
    rows = await monitor.fetch_retrying("SELECT id::text AS id, status, attempts FROM jobs")
    runs = Counter(e.job_id for e in read_executions(record))
    statuses = Counter(r["status"] for r in rows)
    assert statuses.keys() <= {"succeeded", "queued"}, f"after SIGTERM: {dict(statuses)}"
    over_counted = [
        (r["id"], r["attempts"], runs[r["id"]]) for r in rows if r["attempts"] > runs[r["id"]]
    ]
    assert not over_counted, f"attempts counted that never ran: {over_counted[:5]}"
    miscounted = [
        (r["id"], r["status"], r["attempts"])
        for r in rows
        if r["attempts"] != (1 if r["status"] == "succeeded" else 0)
    ]
    assert not miscounted, f"attempts not as expected after release: {miscounted[:5]}"

    queued = [r["id"] for r in rows if r["status"] == "queued"]
    k = queue.index.keys_for(JOB_TYPE)
    ids = [uuid.UUID(i) for i in queued]
    pipe = queue.redis.pipeline(transaction=False)
    pipe.zmscore(k.ready, [keys.ready_member(i) for i in ids])  # type: ignore[misc]
    pipe.zmscore(k.scheduled, [keys.scheduled_member(i, 0) for i in ids])  # type: ignore[misc]
    ready, scheduled = await pipe.execute()
    unindexed = [
        str(i) for i, r, s in zip(ids, ready, scheduled, strict=True) if r is None and s is None
    ]
    assert not unindexed, f"{len(unindexed)} queued jobs missing from Redis: {unindexed[:5]}"
    return {i for i in queued if runs[i] > 0}
