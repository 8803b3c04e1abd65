"""PeriodicScheduler: enqueues the due tick of every periodic job (periodic.py declares
them). Exactly once per tick however many reconcilers run: the job is created with the
idempotency key ``periodic:<name>:<tick>``, which the jobs table holds unique. Only the latest
tick is enqueued: a scheduler that was down for an hour runs the job once, not twelve times.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from queue_core.enqueue.service import JobService
from queue_core.errors import DuplicateJob
from queue_core.periodic import PeriodicJob

log = logging.getLogger(__name__)


class PeriodicScheduler:
    """Enqueues the due tick of every periodic job; safe to run in many copies at once."""

    def __init__(self, service: JobService, periodic: Sequence[PeriodicJob]) -> None:
        self._service = service
        self._periodic = list(periodic)

    async def run_once(self, now: datetime | None = None) -> int:
        """Enqueue each job's latest tick if no scheduler did yet; returns how many were
        created by this call."""
        now = now or datetime.now(UTC)
        created = 0
        for job in self._periodic:
            tick = job.last_tick(now)
            try:
                _, fresh = await self._service.create_once(
                    job.job_type,
                    job.input,
                    None,
                    job.priority,
                    job.max_retries,
                    idempotency_key=job.idempotency_key(tick),
                )
            except DuplicateJob:
                log.warning(
                    "periodic job's definition changed since this tick was enqueued",
                    extra={"action": "periodic", "name": job.name},
                )
                continue
            created += int(fresh)
        return created
