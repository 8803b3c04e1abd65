"""The lease backstop (worker/lease_backstop.py), a real child process against the real
database: it renews one worker's leases while the worker's keeper is silent, only that
worker's, stays idle while pulses arrive, and goes when its worker goes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict

from queue_core import Queue
from queue_core.worker.lease_backstop import BackstopConfig, LeaseBackstop
from tests.support.aio import wait_until

LEASE = 2.0


async def leased(queue: Queue, owner: str, seconds: float) -> str:
    """A job running under ``owner``'s lease, ending ``seconds`` from now."""
    job = await queue.job_service.create("backstopped", {})
    await queue.pool.execute(
        "UPDATE jobs SET status = 'running', attempts = 1, started_at = now(), lease_owner = $2,"
        " lease_expires_at = now() + make_interval(secs => $3) WHERE id = $1",
        job["id"],
        owner,
        seconds,
    )
    return str(job["id"])


async def seconds_left(queue: Queue, job_id: str) -> float:
    value = await queue.pool.fetchval(
        "SELECT extract(epoch FROM lease_expires_at - now()) FROM jobs WHERE id = $1", job_id
    )
    return float(value)


def config(queue: Queue, worker_id: str) -> BackstopConfig:
    s = queue.settings
    return BackstopConfig(s.database_url, s.db_schema, worker_id, LEASE)


async def test_a_silent_keeper_is_backed_up_and_a_pulsing_one_is_left_alone(queue: Queue) -> None:
    # Leases as the keeper leaves them when it renews, just before it falls silent.
    mine = await leased(queue, "worker-a/1", LEASE)
    also_mine = await leased(queue, "worker-a/7", LEASE)
    other = await leased(queue, "worker-ab/1", LEASE)  # worker-a is a prefix of its id
    backstop = LeaseBackstop(config(queue, "worker-a"))
    backstop.start()
    assert backstop.wait_ready(30)
    await queue.pool.execute(  # leases as fresh as the keeper leaves them when it falls silent
        "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $1)"
        " WHERE status = 'running'",
        LEASE,
    )
    backstop.pulse()
    try:
        # No pulse: after half a lease the backstop renews every lease of worker-a's claims.
        lowest = LEASE
        until = time.monotonic() + 3 * LEASE
        while time.monotonic() < until:
            lowest = min(lowest, await seconds_left(queue, mine))
            await asyncio.sleep(0.1)
        assert lowest > 0, f"worker-a's lease expired ({lowest:.2f} s left at worst)"
        assert await seconds_left(queue, also_mine) > 0
        assert await seconds_left(queue, other) < 0, "another worker's lease was renewed"

        # Pulses again: the backstop stops renewing, and the lease runs out.
        until = time.monotonic() + 1.5 * LEASE
        while time.monotonic() < until:
            backstop.pulse()
            await asyncio.sleep(0.1)
        assert await seconds_left(queue, mine) < 0, "renewed while the keeper was pulsing"
        process = backstop._process
        assert process is not None and process.poll() is None
    finally:
        backstop.stop()
    assert process.returncode == 0, "it did not exit when its stdin closed"


async def test_a_backstop_dies_with_its_worker(queue: Queue) -> None:
    """A worker killed outright (here: os._exit right after starting its backstop) takes
    the backstop with it: its stdin closes, and the jobs' leases expire as before."""
    mine = await leased(queue, "doomed/1", 1.0)
    script = textwrap.dedent(
        f"""
        import sys
        from queue_core.worker.lease_backstop import BackstopConfig, LeaseBackstop
        backstop = LeaseBackstop(BackstopConfig(**{asdict(config(queue, "doomed"))!r}))
        backstop.start()
        print(backstop.pid, flush=True)
        import os
        os._exit(0)
        """
    )
    worker = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    pid = int(worker.stdout.strip())

    async def gone() -> bool:
        return not _alive(pid)

    await wait_until(gone, timeout=10)  # else: the backstop outlived its worker
    await asyncio.sleep(LEASE)
    assert await seconds_left(queue, mine) < 0


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped (its parent, init, reaps it soon)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def test_a_worker_starts_a_backstop_and_stops_it(queue: Queue) -> None:
    runner = queue.runner(queue.settings.model_copy(update={"lease_seconds": LEASE}))

    async def noop(job: dict[str, object]) -> dict[str, object]:
        return {}

    runner.register_handler("noop", noop)
    backstop = runner._keeper._backstop
    assert backstop is not None
    task = asyncio.create_task(runner.run())

    async def started() -> bool:
        return backstop.pid is not None

    await wait_until(started, timeout=10)
    pid = backstop.pid
    assert pid is not None and _alive(pid)
    runner.stop()
    await asyncio.wait_for(task, 30)
    assert not _alive(pid), "the worker stopped; its backstop did not"
