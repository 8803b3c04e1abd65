"""PostgreSQL cuts the workers off mid-run (terminated connections, a server restart):
claims back off, outcomes wait in the buffer and are written once Postgres is back (or
discarded when the lease was rescued meanwhile), and no job is lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from queue_core import Queue
from tests.support.chaos import draining
from tests.support.servers import PrivateServers, terminate_hybridq_backends
from tests.support.verdict import verdict

JOBS = 5000
SLEEP = 0.01  # seconds per handler run: keeps ~30 jobs in flight when the fault hits


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_postgres_backends_terminated_mid_run_loses_no_job(
    queue: Queue, tmp_path: Path
) -> None:
    terminated: list[int] = []
    async with draining(queue, tmp_path, jobs=JOBS, sleep=SLEEP) as drain:
        for fraction in (0.2, 0.45, 0.7):
            if not await drain.reach(fraction):
                break
            # Every hybridq connection: the workers' pools and LISTEN connections, and this
            # process's pool (its reconciler); the monitor's connection is not one of them.
            terminated.append(await terminate_hybridq_backends(queue.settings.database_url))
        report = await drain.settle("pg_terminate_backend x3")
    report.notes["terminated"] = terminated

    verdict(report)
    assert all(n > 0 for n in terminated), f"nothing to terminate: {terminated}"


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_postgres_restart_mid_run_loses_no_job(
    queue: Queue, tmp_path: Path, private_servers: PrivateServers
) -> None:
    try:
        async with draining(queue, tmp_path, jobs=JOBS, sleep=SLEEP) as drain:
            assert await drain.reach(0.3), "the drain stalled before the fault"
            restart_seconds = await asyncio.to_thread(private_servers.pg.restart)
            report = await drain.settle("postgres restart")
        report.notes["restart_seconds"] = round(restart_seconds, 1)
    finally:
        assert await asyncio.to_thread(private_servers.pg.ready), "postgres left down"

    verdict(report)  # includes: no worker exited on its own, none stopped working


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_postgres_crash_mid_run_loses_no_job(
    queue: Queue, tmp_path: Path, private_servers: PrivateServers
) -> None:
    """An immediate shutdown (a crash: no checkpoint, unflushed WAL lost), then crash
    recovery. Claims and heartbeats commit asynchronously (claim_pool), so a claim made just
    before the crash may be lost: its job is queued again and runs again with the same
    attempt number. That is at-least-once for attempts started before the server was down,
    and allowed only for them; nothing may be lost."""
    try:
        async with draining(queue, tmp_path, jobs=JOBS, sleep=SLEEP) as drain:
            assert await drain.reach(0.3), "the drain stalled before the fault"
            down_at, crash_seconds = await asyncio.to_thread(private_servers.pg.crash)
            report = await drain.settle("postgres crash", forgiven_until=down_at)
        report.notes["crash_and_recovery_seconds"] = round(crash_seconds, 1)
    finally:
        assert await asyncio.to_thread(private_servers.pg.ready), "postgres left down"

    verdict(report)
