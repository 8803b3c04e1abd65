"""The reconciler: repairs every drift between Postgres (the truth) and the Redis index.

Each ``run_once()``, in bounded pages so memory stays flat however large the backlog:
1. rescue running jobs whose lease expired: back to queued with backoff (the attempt counts),
   or failed with a clear ``last_error`` when no retry is left;
2. per job type, re-index queued jobs Redis lacks and fix entries whose score or set drifted;
3. remove Redis ids whose job is not queued or does not exist (only if their score is still
   the one read, so a concurrent re-index survives);
4. mark each type's index complete (its epoch key). A type whose epoch was missing had its
   index lost (Redis restart, FLUSHALL) and is reported as rebuilt.
Runs hold an advisory lock: a second copy skips its run instead of doing the work twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from queue_core import keys
from queue_core.clock import ServerClock
from queue_core.keys import IndexedScores, IndexSet, IndexWrites
from queue_core.models import IndexEntry, JobEvent, JobStatus
from queue_core.ports import EventSink, IndexMaintenance, MaintenanceStore, ReadyIndex
from queue_core.settings import Settings
from queue_core.telemetry.metrics import Metrics

from .operations import delete_finished
from .scheduler import PeriodicScheduler

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 5000
"""Jobs read from Postgres, or members scanned in Redis, per round trip."""


@dataclass
class ReconcileResult:
    skipped: bool = False  # another reconciler held the lock; nothing was done
    leases_rescued: int = 0  # expired leases put back to queued
    leases_failed: int = 0  # expired leases with no retry left: now failed
    reindexed: int = 0  # queued jobs missing from Redis, added
    drift_fixed: int = 0  # entries with a wrong score or in the wrong set, corrected
    orphans_removed: int = 0  # Redis ids whose job is not queued, removed
    indexes_rebuilt: list[str] = field(default_factory=list)  # types whose index was lost
    periodic_enqueued: int = 0  # periodic jobs whose tick this run enqueued
    retention_deleted: int = 0  # finished jobs deleted as older than the retention
    duration_ms: float = 0.0

    def repairs(self) -> dict[str, int]:
        """The counts of repairs by kind, as the hybridq_reconciler_repairs metric labels them."""
        return {
            "leases_rescued": self.leases_rescued,
            "leases_failed": self.leases_failed,
            "reindexed": self.reindexed,
            "drift_fixed": self.drift_fixed,
            "orphans_removed": self.orphans_removed,
            "indexes_rebuilt": len(self.indexes_rebuilt),
        }

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


class Reconciler:
    """Each chore is a method that adds its counts to a ReconcileResult; ``run_once`` and
    ``rebuild_index`` run them under the reconcile lock (``_pass``)."""

    def __init__(
        self,
        store: MaintenanceStore,
        index: ReadyIndex,
        repair: IndexMaintenance,
        settings: Settings,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        metrics: Metrics | None = None,
        scheduler: PeriodicScheduler | None = None,
        events: EventSink | None = None,
    ) -> None:
        """``scheduler``: the periodic jobs to enqueue at each run (a reconciler without one
        only repairs); ``events``: told of the jobs whose expired lease it rescued."""
        self._events = events
        self.store = store
        self.index = index
        self.repair = repair
        self.settings = settings
        self.page_size = page_size
        self._clock = ServerClock()
        self._metrics = metrics
        self._scheduler = scheduler

    async def run_once(self, job_types: Iterable[str] = ()) -> ReconcileResult:
        """One full pass: every chore. ``job_types`` adds types to check even if neither
        store has any of their jobs (a worker asks for this when its type's index is
        unmarked)."""
        async with self._pass() as result:
            if not result.skipped:
                await self.rescue_expired_leases(result)
                await self.apply_retention(result)
                await self.enqueue_periodic(result)
                types = set(job_types) | set(await self.store.queued_job_types())
                await self.repair_index(types | await self.repair.job_types(), result)
        return result

    async def rebuild_index(self, job_types: Iterable[str]) -> ReconcileResult:
        """Re-index only ``job_types``: what a worker runs when it finds its types' index
        lost, so it need not wait for the next scheduled run."""
        async with self._pass() as result:
            if not result.skipped:
                await self.repair_index(set(job_types), result)
        return result

    async def run_forever(
        self,
        every_seconds: float,
        stop: asyncio.Event,
        on_result: Callable[[ReconcileResult], None] = lambda _: None,
    ) -> None:
        """run_once() every ``every_seconds`` (±10% jitter) until ``stop`` is set; each
        result goes to ``on_result`` (the CLI prints it) and the log."""
        while not stop.is_set():
            try:
                on_result(await self.run_once())
            except Exception as exc:  # a failed run must not end the loop; the next retries
                log.warning(
                    "reconcile run failed", extra={"action": "reconcile", "error": str(exc)}
                )
            delay = every_seconds * random.uniform(0.9, 1.1)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass

    @asynccontextmanager
    async def _pass(self) -> AsyncIterator[ReconcileResult]:
        """Hold the reconcile lock for one pass (skipped when another process has it); time
        it, count it in the metrics and log it."""
        started = time.perf_counter()
        result = ReconcileResult()
        async with self.store.reconcile_lock() as acquired:
            result.skipped = not acquired
            if acquired:
                await self._clock.sync(self.store)
            yield result
        result.duration_ms = round((time.perf_counter() - started) * 1000, 1)
        if self._metrics is not None:
            for kind, count in result.repairs().items():
                self._metrics.reconciler_repairs.labels(kind).inc(count)
        log.info("reconciled", extra={"action": "reconcile", **asdict(result)})

    async def rescue_expired_leases(self, result: ReconcileResult) -> None:
        """Running jobs whose lease expired go back to queued (attempt counted) or fail."""
        while True:
            rows = await self.store.rescue_expired_leases(
                self.page_size, self.settings.retry_base_seconds, self.settings.retry_cap_seconds
            )
            requeued = [r.entry for r in rows if r.status is JobStatus.QUEUED]
            result.leases_rescued += len(requeued)
            result.leases_failed += len(rows) - len(requeued)
            if self._events is not None:
                self._events.publish(
                    [
                        JobEvent(str(r.entry.id), r.entry.job_type, r.user_id, status=r.status)
                        for r in rows
                    ]
                )
            await self.index.add_jobs(requeued)
            if len(rows) < self.page_size:
                return

    async def apply_retention(self, result: ReconcileResult) -> None:
        """Delete finished jobs past their retention, at most retention_batch_per_run."""
        budget = self.settings.retention_batch_per_run
        rules = [
            (self.settings.retention_succeeded_seconds, [JobStatus.SUCCEEDED, JobStatus.CANCELLED]),
            (self.settings.retention_failed_seconds, [JobStatus.FAILED]),
        ]
        for seconds, statuses in rules:
            async for deleted in delete_finished(
                self.store,
                older_than=timedelta(seconds=seconds),
                statuses=statuses,
                batch=min(self.page_size, max(budget, 1)),
                limit=budget - result.retention_deleted,
            ):
                result.retention_deleted += deleted

    async def enqueue_periodic(self, result: ReconcileResult) -> None:
        """Enqueue the due tick of every periodic job, once however many copies run."""
        if self._scheduler is not None:
            result.periodic_enqueued += await self._scheduler.run_once()

    async def repair_index(self, job_types: Iterable[str], result: ReconcileResult) -> None:
        """Make each type's Redis index match its queued jobs, then mark it complete."""
        ordered = sorted(job_types)
        result.indexes_rebuilt = sorted(await self.repair.epoch_missing(ordered))
        for job_type in ordered:
            token = await self.repair.begin_rebuild(job_type)
            await self._reindex_type(job_type, result)
            await self._remove_orphans(job_type, result)
            if not await self.repair.finish_rebuild(job_type, token):
                log.warning(
                    "redis lost data during the rebuild; the next run retries",
                    extra={"action": "reconcile", "job_type": job_type},
                )

    async def _reindex_type(self, job_type: str, result: ReconcileResult) -> None:
        after = None
        now_ms = self._clock.now_ms()
        while page := await self.store.queued_jobs_page(job_type, after, self.page_size):
            after = page[-1]
            scores = await self.repair.scores_of(job_type, page)
            writes = IndexWrites()
            for entry, indexed in zip(page, scores, strict=True):
                _plan_repair(writes, entry, indexed, now_ms, result)
            await self.repair.put(job_type, writes)

    async def _remove_orphans(self, job_type: str, result: ReconcileResult) -> None:
        """Remove members that do not stand for a queued job of this type at its current
        priority: finished, cancelled, running or unknown jobs, ids filed under the wrong
        type, stale priority ranks, and members that are not ids at all."""
        for which in IndexSet:
            scheduled = which is IndexSet.SCHEDULED
            async for members in self.repair.scan_pages(job_type, which, self.page_size):
                expected = {
                    m: keys.job_id_from_member(m)
                    for m, _ in members
                    if keys.is_member(m, scheduled=scheduled)
                }
                queued = {
                    e.id: e for e in await self.store.find_queued_jobs(list(expected.values()))
                }
                stale = [
                    (member, score)
                    for member, score in members
                    if not _stands_for(member, expected.get(member), queued, job_type, scheduled)
                ]
                result.orphans_removed += await self.repair.remove_if_unchanged(
                    job_type, which, stale
                )


def _stands_for(
    member: bytes,
    job_id: uuid.UUID | None,
    queued: dict[uuid.UUID, IndexEntry],
    job_type: str,
    scheduled: bool,
) -> bool:
    entry = queued.get(job_id) if job_id is not None else None
    if entry is None or entry.job_type != job_type:
        return False
    return not scheduled or member == keys.scheduled_member(entry.id, entry.priority)


def _plan_repair(
    writes: IndexWrites, e: IndexEntry, indexed: IndexedScores, now_ms: int, result: ReconcileResult
) -> None:
    """Add to ``writes`` what makes one queued job's index entry match Postgres."""
    due = keys.due_ms(e.scheduled_for)
    ready_score = keys.ready_score(e.priority, e.scheduled_for)
    ready_member = keys.ready_member(e.id)
    scheduled_member = keys.scheduled_member(e.id, e.priority)
    if indexed.ready is None and indexed.scheduled is None:
        if due > now_ms:
            writes.scheduled[scheduled_member] = due
        else:
            writes.ready[ready_member] = ready_score
        result.reindexed += 1
        return
    fixes = 0
    if due > now_ms and indexed.ready is not None:  # listed as ready before its time
        writes.remove_ready.append(ready_member)
        writes.scheduled[scheduled_member] = due
        fixes += 1
    elif indexed.ready is not None:
        if indexed.ready != ready_score:
            writes.ready[ready_member] = ready_score
            fixes += 1
        if indexed.scheduled is not None:  # listed twice
            writes.remove_scheduled.append(scheduled_member)
            fixes += 1
    elif indexed.scheduled != due:
        writes.scheduled[scheduled_member] = due
        fixes += 1
    result.drift_fixed += 1 if fixes else 0
