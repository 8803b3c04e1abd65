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
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from queue_core import keys
from queue_core.clock import ServerClock
from queue_core.enqueue.service import JobService
from queue_core.index.redis_index import RedisIndex
from queue_core.index.repair import IndexedScores, IndexRepair
from queue_core.models import JobStatus
from queue_core.periodic import PeriodicJob, PeriodicScheduler
from queue_core.ports import IndexEntry
from queue_core.settings import Settings
from queue_core.store.pg_store import PgStore
from queue_core.telemetry.metrics import Metrics

from .operations import delete_finished

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

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


class Reconciler:
    def __init__(
        self,
        store: PgStore,
        index: RedisIndex,
        settings: Settings,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        metrics: Metrics | None = None,
        service: JobService | None = None,
        periodic: Sequence[PeriodicJob] = (),
    ) -> None:
        """``service`` and ``periodic``: the periodic jobs to enqueue at each run (a
        reconciler without them only repairs)."""
        self.store = store
        self.repair = IndexRepair(index)
        self.index = index
        self.settings = settings
        self.page_size = page_size
        self._clock = ServerClock()
        self._metrics = metrics
        self._scheduler = PeriodicScheduler(service, list(periodic)) if service else None

    async def run_once(self, job_types: Iterable[str] = ()) -> ReconcileResult:
        """One full pass. ``job_types`` adds types to check even if neither store has any
        of their jobs (a worker asks for this when its type's index is unmarked)."""
        return await self._locked(rescue=True, job_types=job_types, only_given=False)

    async def rebuild_index(self, job_types: Iterable[str]) -> ReconcileResult:
        """Re-index only ``job_types`` (no lease rescue): what a worker runs when it finds
        its types' index lost, so it need not wait for the next scheduled run."""
        return await self._locked(rescue=False, job_types=job_types, only_given=True)

    async def run_forever(self, every_seconds: float, stop: asyncio.Event) -> None:
        """run_once() every ``every_seconds`` (±10% jitter) until ``stop`` is set; each
        result is logged and printed as one JSON line."""
        while not stop.is_set():
            try:
                result = await self.run_once()
                print(result.to_json(), flush=True)
            except Exception as exc:  # a failed run must not end the loop; the next retries
                log.warning(
                    "reconcile run failed", extra={"action": "reconcile", "error": str(exc)}
                )
            delay = every_seconds * random.uniform(0.9, 1.1)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass

    async def _locked(
        self, *, rescue: bool, job_types: Iterable[str], only_given: bool
    ) -> ReconcileResult:
        started = time.perf_counter()
        result = ReconcileResult()
        async with self.store.reconcile_lock() as acquired:
            if not acquired:
                result.skipped = True
                return result
            await self._clock.sync(self.store)
            if rescue:
                await self._rescue_expired_leases(result)
                await self._apply_retention(result)
                if self._scheduler is not None:
                    result.periodic_enqueued = await self._scheduler.run_once()
            types = set(job_types)
            if not only_given:
                types |= set(await self.store.queued_job_types()) | await self.repair.job_types()
            ordered = sorted(types)
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
        result.duration_ms = round((time.perf_counter() - started) * 1000, 1)
        if self._metrics is not None:
            for kind in (
                "leases_rescued",
                "leases_failed",
                "reindexed",
                "drift_fixed",
                "orphans_removed",
            ):
                self._metrics.reconciler_repairs.labels(kind).inc(getattr(result, kind))
            self._metrics.reconciler_repairs.labels("indexes_rebuilt").inc(
                len(result.indexes_rebuilt)
            )
        log.info("reconciled", extra={"action": "reconcile", **asdict(result)})
        return result

    async def _rescue_expired_leases(self, result: ReconcileResult) -> None:
        while True:
            rows = await self.store.rescue_expired_leases(
                self.page_size, self.settings.retry_base_seconds, self.settings.retry_cap_seconds
            )
            requeued = [entry for entry, status in rows if status == "queued"]
            result.leases_rescued += len(requeued)
            result.leases_failed += len(rows) - len(requeued)
            await self.index.add_jobs(requeued)
            if len(rows) < self.page_size:
                return

    async def _apply_retention(self, result: ReconcileResult) -> None:
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

    async def _reindex_type(self, job_type: str, result: ReconcileResult) -> None:
        after = None
        now_ms = self._clock.now_ms()
        while page := await self.store.queued_jobs_page(job_type, after, self.page_size):
            after = page[-1]
            scores = await self.repair.scores_of(job_type, page)
            plan = _RepairPlan()
            for entry, indexed in zip(page, scores, strict=True):
                plan.add(entry, indexed, now_ms, result)
            await self.repair.put(
                job_type, plan.ready, plan.scheduled, plan.remove_ready, plan.remove_scheduled
            )

    async def _remove_orphans(self, job_type: str, result: ReconcileResult) -> None:
        """Remove members that do not stand for a queued job of this type at its current
        priority: finished, cancelled, running or unknown jobs, ids filed under the wrong
        type, stale priority ranks, and members that are not ids at all."""
        for which in ("ready", "scheduled"):
            async for members in self.repair.scan_pages(job_type, which, self.page_size):
                expected = {
                    m: keys.job_id_from_member(m)
                    for m, _ in members
                    if keys.is_member(m, scheduled=which == "scheduled")
                }
                queued = {
                    e.id: e for e in await self.store.find_queued_jobs(list(expected.values()))
                }
                stale = [
                    (member, score)
                    for member, score in members
                    if not _stands_for(member, expected.get(member), queued, job_type, which)
                ]
                result.orphans_removed += await self.repair.remove_if_unchanged(
                    job_type, which, stale
                )


def _stands_for(
    member: bytes,
    job_id: uuid.UUID | None,
    queued: dict[uuid.UUID, IndexEntry],
    job_type: str,
    which: str,
) -> bool:
    entry = queued.get(job_id) if job_id is not None else None
    if entry is None or entry.job_type != job_type:
        return False
    return which == "ready" or member == keys.scheduled_member(entry.id, entry.priority)


class _RepairPlan:
    """The Redis writes that make one page of queued jobs match Postgres."""

    def __init__(self) -> None:
        self.ready: dict[bytes, int] = {}
        self.scheduled: dict[bytes, int] = {}
        self.remove_ready: list[bytes] = []
        self.remove_scheduled: list[bytes] = []

    def add(
        self, e: IndexEntry, indexed: IndexedScores, now_ms: int, result: ReconcileResult
    ) -> None:
        due = keys.due_ms(e.scheduled_for)
        ready_score = keys.ready_score(e.priority, e.scheduled_for)
        ready_member = keys.ready_member(e.id)
        scheduled_member = keys.scheduled_member(e.id, e.priority)
        if indexed.ready is None and indexed.scheduled is None:
            if due > now_ms:
                self.scheduled[scheduled_member] = due
            else:
                self.ready[ready_member] = ready_score
            result.reindexed += 1
            return
        fixes = 0
        if due > now_ms and indexed.ready is not None:  # listed as ready before its time
            self.remove_ready.append(ready_member)
            self.scheduled[scheduled_member] = due
            fixes += 1
        elif indexed.ready is not None:
            if indexed.ready != ready_score:
                self.ready[ready_member] = ready_score
                fixes += 1
            if indexed.scheduled is not None:  # listed twice
                self.remove_scheduled.append(scheduled_member)
                fixes += 1
        elif indexed.scheduled != due:
            self.scheduled[scheduled_member] = due
            fixes += 1
        result.drift_fixed += 1 if fixes else 0
