"""Operations on the queue as a whole: statistics, bulk retry, and deleting finished jobs.
Shared by the API, the dashboard, the CLI and the reconciler's retention step."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from queue_core.errors import BackendUnavailable, InvalidJob
from queue_core.ids import uuid7_floor
from queue_core.models import JobStatus
from queue_core.ports import MaintenanceStore, ReadyIndex

log = logging.getLogger(__name__)

DEFAULT_BATCH = 1000
"""Rows per statement of a bulk operation: each one is short, and progress is visible."""


@dataclass(frozen=True)
class TypeStats:
    job_type: str
    by_status: dict[str, int] = field(default_factory=dict)
    ready_in_index: int = 0
    scheduled_in_index: int = 0
    oldest_queued_age_seconds: float | None = None  # how long the oldest due job has waited
    live_workers: int = 0  # workers alive now that have registered this type

    @property
    def queued_without_worker(self) -> int:
        """Queued jobs that no live worker would run: a typo'd job type, a type no
        deployed handlers module registers yet, or a worker pool that is down."""
        return 0 if self.live_workers else self.by_status.get(JobStatus.QUEUED, 0)


async def queue_stats(store: MaintenanceStore, index: ReadyIndex) -> list[TypeStats]:
    """Per job type (every type with jobs, or that a live worker registered): jobs by
    status, ids in the Redis index, the oldest due job's wait, the live workers serving it."""
    counts = await store.count_jobs()
    oldest = await store.oldest_due_queued_jobs()
    serving = Counter(t for w in await index.live_workers() for t in set(w.job_types))
    types = sorted({c.job_type for c in counts} | set(oldest) | set(serving))
    depths = await index.depths(types)
    now = datetime.now(UTC)
    return [
        TypeStats(
            job_type=t,
            by_status={c.status: c.jobs for c in counts if c.job_type == t},
            ready_in_index=depths[t][0],
            scheduled_in_index=depths[t][1],
            oldest_queued_age_seconds=(
                round((now - oldest[t]).total_seconds(), 3) if t in oldest else None
            ),
            live_workers=serving[t],
        )
        for t in types
    ]


def retry_in_bulk(
    store: MaintenanceStore,
    index: ReadyIndex,
    *,
    status: str = JobStatus.FAILED,
    job_type: str | None = None,
    batch: int = DEFAULT_BATCH,
) -> AsyncIterator[int]:
    """Queue again every job of ``status`` (failed or cancelled) that had finished when the
    operation began, optionally of one type, in batches; yields how many each batch retried.
    Raises InvalidJob at once for another status."""
    if status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise InvalidJob("only failed or cancelled jobs can be retried")

    async def batches() -> AsyncIterator[int]:
        started = await store.server_now()
        while entries := await store.retry_jobs_in_bulk(status, job_type, batch, started):
            try:
                await index.add_jobs(entries)
            except BackendUnavailable as exc:  # committed in Postgres: the reconciler indexes
                log.warning(
                    "retried jobs not indexed; the reconciler will",
                    extra={"action": "retry_in_bulk", "error": str(exc)},
                )
            yield len(entries)

    return batches()


def delete_finished(
    store: MaintenanceStore,
    *,
    older_than: timedelta,
    statuses: Sequence[str],
    batch: int = DEFAULT_BATCH,
    limit: int | None = None,
) -> AsyncIterator[int]:
    """Delete jobs of ``statuses`` (terminal ones only) that finished more than
    ``older_than`` ago, in batches; yields how many each batch deleted. Stops after
    ``limit`` rows when given (the reconciler bounds each run this way). Raises InvalidJob at
    once for a non-terminal status or a non-positive age."""
    terminal = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
    if not statuses or not set(statuses) <= terminal:
        raise InvalidJob("only succeeded, failed or cancelled jobs can be deleted")
    if older_than <= timedelta(0):
        raise InvalidJob("older_than must be positive")

    async def batches() -> AsyncIterator[int]:
        # The cut-off by Postgres' clock: finished_at was written by it.
        cutoff = await store.server_now() - older_than
        before_id = uuid7_floor(int(cutoff.timestamp() * 1000))
        after_id = uuid.UUID(int=0)
        deleted = 0
        while limit is None or deleted < limit:
            size = batch if limit is None else min(batch, limit - deleted)
            ids = await store.delete_finished_jobs(
                before_id=before_id,
                finished_before=cutoff,
                after_id=after_id,
                statuses=list(statuses),
                limit=size,
            )
            if not ids:
                return
            after_id = ids[-1]
            deleted += len(ids)
            yield len(ids)

    return batches()
