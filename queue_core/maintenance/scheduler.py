"""PeriodicScheduler: enqueues the due ticks of every periodic job (periodic.py declares
them and their catch-up policy).

Exactly once per tick however many reconcilers run, and whatever retention or purge later
deletes: each schedule's position lives in ``periodic_schedules``, and a pass moves it with
a compare-and-set in the same transaction that inserts the ticks' jobs, so of two passes
that read the same position only one enqueues anything. A schedule seen for the first time
starts at that moment: its first tick is the next one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from queue_core.enqueue.service import index_entry
from queue_core.errors import BackendUnavailable
from queue_core.ids import uuid7
from queue_core.models import Job, NewJob
from queue_core.periodic import PeriodicJob, TickJob, TickPlan
from queue_core.ports import MaintenanceStore, ReadyIndex
from queue_core.telemetry.metrics import Metrics

log = logging.getLogger(__name__)


class PeriodicScheduler:
    """Enqueues the due ticks of every periodic job; safe to run in many copies at once."""

    def __init__(
        self,
        store: MaintenanceStore,
        index: ReadyIndex,
        periodic: Sequence[PeriodicJob],
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._index = index
        self._periodic = list(periodic)
        self._metrics = metrics

    async def run_once(self, now: datetime | None = None) -> int:
        """Handle every schedule's ticks up to ``now`` (default: Postgres' clock, the same
        for every reconciler); returns how many jobs this call created. Raises
        BackendUnavailable when Postgres cannot be reached (nothing half-done: each
        schedule moves with its jobs or not at all)."""
        if not self._periodic:
            return 0
        now = now or await self._store.server_now()
        names = [p.name for p in self._periodic]
        await self._store.start_periodic_schedules(names, now)
        positions = await self._store.periodic_schedule_positions(names)
        created = 0
        for periodic in self._periodic:
            position = positions[periodic.name]
            plan = periodic.plan(position, now)
            if plan.position != position:
                created += await self._advance(periodic, position, plan)
        return created

    async def _advance(self, periodic: PeriodicJob, position: datetime, plan: TickPlan) -> int:
        ticks = [
            TickJob(tick, self._new_job(periodic), periodic.idempotency_key(tick))
            for tick in plan.due
        ]
        jobs = await self._store.advance_periodic_schedule(
            periodic.name, position, plan.position, ticks
        )
        if jobs is None:
            return 0  # another scheduler handled these ticks first
        if plan.skipped:
            log.info(
                "periodic ticks skipped",
                extra={
                    "action": "enqueue_periodic",
                    "name": periodic.name,
                    "catch_up": periodic.catch_up.value,
                    "first_tick": plan.skipped[0].isoformat(),
                    "last_tick": plan.skipped[1].isoformat(),
                },
            )
        by_key = {t.idempotency_key: t.tick for t in ticks}
        for job in jobs:
            log.info(
                "periodic job enqueued",
                extra={
                    "action": "enqueue_periodic",
                    "name": periodic.name,
                    "tick": by_key[job["idempotency_key"]].isoformat(),
                    "job_id": job["id"],
                    "job_type": job["job_type"],
                },
            )
        await self._index_quietly(jobs)
        return len(jobs)

    @staticmethod
    def _new_job(periodic: PeriodicJob) -> NewJob:
        return NewJob.build(
            id=uuid7(),
            job_type=periodic.job_type,
            input=periodic.input,
            user_id=None,
            priority=periodic.priority,
            max_retries=periodic.max_retries,
            scheduled_for=None,
        )

    async def _index_quietly(self, jobs: list[Job]) -> None:
        """The jobs are committed: a Redis failure only delays them until the reconciler's
        next repair (the same run's, when the scheduler runs inside it)."""
        if self._metrics is not None:
            for job in jobs:
                self._metrics.enqueued.labels(job["job_type"]).inc()
        try:
            await self._index.add_jobs([index_entry(job, deferred=False) for job in jobs])
        except BackendUnavailable as exc:
            log.warning(
                "periodic jobs not indexed; the reconciler will",
                extra={"action": "enqueue_periodic", "jobs": len(jobs), "error": str(exc)},
            )
