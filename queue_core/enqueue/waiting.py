"""Waiting for a job to finish: JobService.wait().

The waiter follows the job's channel (index/events.py), confirmed before it reads the job,
so the moment it finishes cannot slip between the read and the subscription; on each status
event it reads the job again from Postgres (the truth: an event only says that a change was
committed). With Redis unreachable it polls Postgres instead, backing off from 50 ms to 1 s,
and still returns the final state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from queue_core import keys
from queue_core.errors import BackendUnavailable, WaitTimeout
from queue_core.models import TERMINAL_STATUSES, Job
from queue_core.ports import EventFollower

RECHECK_SECONDS = 5.0
"""Even with live events, the job is read again this often (a message lost on the way)."""
POLL_MIN_SECONDS, POLL_MAX_SECONDS = 0.05, 1.0
"""Polling Postgres while Redis is unreachable: from this to this, doubling."""


async def wait_for_job(
    get: Callable[[str], Awaitable[Job]],
    follower: EventFollower | None,
    namespace: str,
    job_id: str,
    timeout: float,
) -> Job:
    """The job once it is succeeded, failed or cancelled. Raises WaitTimeout (with the
    job's state then) after ``timeout`` seconds, JobNotFound for no such job."""
    deadline = time.monotonic() + timeout
    if follower is not None:
        try:
            async with follower.subscribe(keys.job_channel(namespace, job_id)) as events:
                job = await get(job_id)
                while not _finished(job) and (left := deadline - time.monotonic()) > 0:
                    message = await events.get(min(left, RECHECK_SECONDS))
                    if message is None or events.overflowed or message.get("kind") == "status":
                        job = await get(job_id)
                return _finished_or_timeout(job, timeout)
        except BackendUnavailable as exc:
            if exc.backend != "redis":
                raise
    return await _poll(get, job_id, deadline, timeout)


async def _poll(
    get: Callable[[str], Awaitable[Job]], job_id: str, deadline: float, timeout: float
) -> Job:
    delay = POLL_MIN_SECONDS
    job = await get(job_id)
    while not _finished(job) and (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 2, POLL_MAX_SECONDS)
        job = await get(job_id)
    return _finished_or_timeout(job, timeout)


def _finished(job: Job) -> bool:
    return job["status"] in TERMINAL_STATUSES


def _finished_or_timeout(job: Job, timeout: float) -> Job:
    if _finished(job):
        return job
    raise WaitTimeout(
        f"job {job['id']} is still {job['status']} after {timeout:g}s", job=job
    )
