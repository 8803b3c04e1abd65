"""The periodic schedules' positions (table ``periodic_schedules``, migration 0010): the
part of PgStore the periodic scheduler uses, kept apart so pg_store.py stays the job table's.
What a position means is in queue_core/periodic.py."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from queue_core.models import Job
from queue_core.periodic import TickJob

from .connection import translate_errors
from .queries import Q
from .rows import job_from_record


class PeriodicSchedules:
    """Mixed into PgStore (ports.MaintenanceStore); every method is one transaction."""

    pool: asyncpg.Pool

    async def start_periodic_schedules(self, names: Sequence[str], now: datetime) -> None:
        """Schedules not seen before start at ``now``; the others are left as they are."""
        async with translate_errors():
            await self.pool.execute(Q.start_periodic_schedules, list(names), now)

    async def periodic_schedule_positions(self, names: Sequence[str]) -> dict[str, datetime]:
        async with translate_errors():
            rows = await self.pool.fetch(Q.periodic_schedule_positions, list(names))
        return {r["name"]: r["position"] for r in rows}

    async def advance_periodic_schedule(
        self,
        name: str,
        from_position: datetime,
        to_position: datetime,
        jobs: Sequence[TickJob],
    ) -> list[Job] | None:
        """Move schedule ``name`` from ``from_position`` to ``to_position`` and insert the
        jobs of its due ticks, in one transaction; returns the jobs inserted, or None (and
        nothing written) when another scheduler moved the schedule first."""
        last = jobs[-1] if jobs else None
        async with translate_errors(), self.pool.acquire() as conn, conn.transaction():
            moved = await conn.fetchval(
                Q.advance_periodic_schedule,
                name,
                from_position,
                to_position,
                last.tick if last else None,
                last.job.id if last else None,
            )
            if moved is None:
                return None
            if not jobs:
                return []
            rows = await conn.fetch(
                Q.insert_periodic_jobs,
                [j.job.id for j in jobs],
                [j.job.job_type for j in jobs],
                [j.job.input_json for j in jobs],
                [j.job.priority for j in jobs],
                [j.job.max_retries for j in jobs],
                [j.idempotency_key for j in jobs],
            )
        return [job_from_record(r) for r in rows]
