"""Giving claimed jobs back to the queue, attempt not counted: jobs claimed ahead that
waited too long, and unfinished jobs at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from queue_core.errors import BackendUnavailable
from queue_core.models import Attempt
from queue_core.ports import ClaimStore, ReadyIndex

log = logging.getLogger(__name__)

RELEASE_TRIES = 8
"""Tries to give jobs back (backoff 0.1 s doubling to 1 s: about 5 s in all)."""


async def release_jobs(
    store: ClaimStore,
    index: ReadyIndex,
    attempts: Sequence[Attempt],
    worker_id: str,
    delay_seconds: float = 0.0,
) -> bool:
    """Release the jobs (fenced) and index them again, due no sooner than
    ``delay_seconds`` from now. False when Postgres would not take them within a few seconds
    (their leases are still held)."""
    delay = 0.1
    for _ in range(RELEASE_TRIES):
        try:
            entries = await store.release_jobs(attempts, delay_seconds)
            break
        except BackendUnavailable:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
    else:
        log.error(
            "could not release jobs now",
            extra={"action": "release_jobs", "jobs": len(attempts), "worker_id": worker_id},
        )
        return False
    with contextlib.suppress(BackendUnavailable):  # else the reconciler indexes them
        await index.add_jobs(entries)
    log.info(
        "released unfinished jobs",
        extra={"action": "release_jobs", "jobs": len(entries), "worker_id": worker_id},
    )
    return True
