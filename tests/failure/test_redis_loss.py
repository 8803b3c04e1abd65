"""Redis loses the index mid-run (FLUSHALL, or a restart without persistence): workers claim
straight from Postgres, rebuild the index, go back to Redis, and no job is lost. Jobs
created while Redis is down are acknowledged by their Postgres commit and run too."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from queue_core import Queue
from tests.support.chaos import draining
from tests.support.recording import JOB_TYPE
from tests.support.servers import PrivateServers
from tests.support.verdict import verdict

JOBS = 5000
SLEEP = 0.01  # seconds per handler run: keeps ~30 jobs in flight when the fault hits


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_redis_flushall_mid_run_loses_no_job(queue: Queue, tmp_path: Path) -> None:
    async with draining(queue, tmp_path, jobs=JOBS, sleep=SLEEP) as drain:
        for fraction in (0.25, 0.6):
            if not await drain.reach(fraction):
                break
            await queue.redis.flushall()
        report = await drain.settle("redis FLUSHALL x2")

    verdict(report)
    # The workers noticed the lost index, claimed from Postgres, then through Redis again.
    assert report.events["to_postgres"] >= 1 and report.events["back_to_redis"] >= 1, (
        report.summary()
    )


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_redis_down_for_seconds_then_back_empty_loses_no_job(
    queue: Queue, tmp_path: Path, private_servers: PrivateServers
) -> None:
    """Redis stops (SHUTDOWN NOSAVE) for ~3 s early in the drain and comes back empty. Jobs
    are created meanwhile, half of them due only after Redis is back, so they must be found
    through the rebuilt index (or the Postgres fallback), never lost with the old one."""
    outage_jobs: list[str] = []
    async with draining(queue, tmp_path, jobs=JOBS, sleep=SLEEP) as drain:
        assert await drain.reach(0.1), "the drain stalled before the fault"
        await asyncio.to_thread(private_servers.redis.stop)
        try:
            down_since = time.monotonic()
            for batch in range(5):
                # Acknowledged by the Postgres commit; Redis' absence only delays them.
                due_later = datetime.now(UTC) + timedelta(seconds=5)
                created = await queue.job_service.create_many(
                    [
                        {
                            "job_type": JOB_TYPE,
                            "input": {"n": JOBS + batch * 100 + i, "sleep": SLEEP},
                            **({"scheduled_for": due_later} if i % 2 else {}),
                        }
                        for i in range(100)
                    ]
                )
                outage_jobs += [j["id"] for j in created]
                one = await queue.job_service.create(JOB_TYPE, {"n": -batch, "sleep": SLEEP})
                outage_jobs.append(one["id"])
                await asyncio.sleep(0.5)
            await asyncio.sleep(max(0.0, 3.0 - (time.monotonic() - down_since)))
        finally:
            await asyncio.to_thread(private_servers.redis.start)
        drain.acknowledged += outage_jobs
        report = await drain.settle("redis down 3 s, back empty")

    assert len(outage_jobs) == 505
    verdict(report)
    assert report.jobs == JOBS + len(outage_jobs), report.summary()
    assert report.events["to_postgres"] >= 1 and report.events["back_to_redis"] >= 1, (
        report.summary()
    )
