"""Claimer: how a worker claims jobs, and how an idle worker waits for them.

Normally through Redis: ``index.claim_ids`` pops due ids (Lua, atomic: each id goes to one
worker) and ``store.claim_jobs`` confirms them in one conditional UPDATE (queued → running,
under a lease owned by this claim); ids Postgres does not confirm are dropped, or re-indexed
when Postgres says they are still queued (e.g. not due yet). An idle worker waits in a
blocking pop (BZPOPMIN) that hands it the next indexed id.

Straight from Postgres (``FOR UPDATE SKIP LOCKED``, same order) while Redis is unreachable
or a type's index was lost and is being rebuilt; an idle worker then waits for the pub/sub
wake-up message (``new_work``) or the fallback's poll.

Both ``claim`` and ``idle`` return the confirmed jobs, in claim order; starting them is the
runner's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from queue_core.clock import ServerClock
from queue_core.errors import BackendUnavailable
from queue_core.models import Attempt, IndexEntry, Job, PoppedId
from queue_core.ports import ClaimStore, ReadyIndex
from queue_core.settings import Settings
from queue_core.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

REDIS_RETRY_SECONDS = 1.0
"""While claiming from Postgres, try Redis again this often."""
NOT_DUE_BACKOFF_MS = 50
"""A claim that popped ids Postgres says are not due yet waits this long before the next."""
BLOCKING_POP_MAX_SECONDS = 1.0
"""An idle worker's blocking pop returns at least this often (below the client's socket
timeout), so that it re-checks the index epoch and scheduled jobs with a full claim."""

RebuildIndex = Callable[[list[str]], Awaitable[bool]]
"""Re-index these job types from Postgres; False when another process was doing it."""


class ClaimSource(StrEnum):
    REDIS = "redis"
    POSTGRES = "postgres"


@dataclass(frozen=True)
class ClaimedJob:
    """A job this worker now holds under a lease: ``attempt`` is its fence."""

    job: Job
    attempt: Attempt
    source: ClaimSource


@dataclass(frozen=True)
class Claim:
    jobs: list[ClaimedJob]
    wait_ms: int  # 0: more is ready now; >0: ms until the next scheduled job; -1: none known


class Claimer:
    def __init__(
        self,
        store: ClaimStore,
        index: ReadyIndex,
        settings: Settings,
        worker_id: str,
        *,
        rebuild_index: RebuildIndex | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """``rebuild_index(types)`` re-indexes types whose Redis index was lost (connect()
        passes Reconciler.rebuild_index); it runs in the background, one per type."""
        self.settings = settings
        self.worker_id = worker_id
        self.clock = ServerClock()
        self.new_work = asyncio.Event()  # set by the wake-up listener and finished rebuilds
        self._store = store
        self._index = index
        self._rebuild_index = rebuild_index
        self._metrics = metrics
        self._round_robin = 0
        self._claims = 0  # numbers this worker's claims (see _next_lease_owner)
        self._postgres_until: dict[str, float] = {}  # job type -> monotonic time to retry Redis
        self._degraded: set[str] = set()  # types claimed from Postgres now (logged once)
        self._claimed_through_redis: set[str] = set()  # types this worker found indexed
        self._rebuilds: dict[str, asyncio.Task[None]] = {}
        self._idle_pop: asyncio.Future[PoppedId | None] | None = None  # see idle()
        self._interrupted = asyncio.Event()
        self._not_due = False  # Postgres refused popped ids as not due (see _claim_type)

    def interrupt(self) -> None:
        """Stop waiting in idle() now, and for good (the worker is stopping)."""
        self._interrupted.set()
        self.new_work.set()
        if self._idle_pop is not None:
            self._idle_pop.cancel()

    async def aclose(self) -> None:
        """Cancel the index rebuilds still running."""
        tasks = list(self._rebuilds.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def from_postgres(self) -> bool:
        """Whether some type is claimed straight from Postgres now (no claim-ahead then:
        the fallback claim cannot tell a job's last attempt from the others)."""
        now = time.monotonic()
        return any(now < until for until in self._postgres_until.values())

    async def claim(self, types: list[str], free: int, slots: int) -> Claim:
        """Claim up to ``free`` jobs across these types, round-robin so that one busy type
        cannot starve the others; the first ``slots`` start at once, the rest are claimed
        ahead (see the claim_jobs statement)."""
        self._round_robin = (self._round_robin + 1) % len(types)
        jobs: list[ClaimedJob] = []
        wait_ms = -1
        if self.clock.stale:
            await self.clock.sync(self._store)
        now_ms = self.clock.now_ms()
        for job_type in types[self._round_robin :] + types[: self._round_robin]:
            want = min(free - len(jobs), self.settings.claim_batch_max)
            if want <= 0:
                break
            claimed = await self._claim_type(job_type, want, now_ms, max(0, slots - len(jobs)))
            jobs += claimed.jobs
            wait_ms = _sooner(wait_ms, claimed.wait_ms)
        return Claim(jobs, wait_ms)

    async def idle(self, job_types: list[str], timeout: float, slots: int) -> list[ClaimedJob]:
        """Nothing to claim: wait for work. Through Redis, in a blocking pop that hands the
        next indexed id straight to this worker, which confirms it here (one round trip less
        than a wake-up message followed by a claim). While some type is claimed from
        Postgres, on the wake-up event with the fallback's poll."""
        now = time.monotonic()
        if self._interrupted.is_set():
            return []
        if any(now < self._postgres_until.get(t, 0.0) for t in job_types):
            await _wait(self.new_work, timeout)
            return []
        # A task of its own so that interrupt() can cancel it. An id popped in the instant
        # before that cancel stays queued in Postgres, and the reconciler indexes it again.
        pop = asyncio.ensure_future(
            self._index.wait_pop(job_types, min(timeout, BLOCKING_POP_MAX_SECONDS))
        )
        self._idle_pop = pop
        try:
            popped = await pop
        except asyncio.CancelledError:
            if self._interrupted.is_set() and not _cancelling():
                return []  # interrupt() cancelled the pop, not someone this task
            raise
        except Exception:
            # Redis trouble (the next claim_ids meets it and falls back) or a Redis that
            # refuses the command: wait on the wake-up message instead, never spin.
            await _wait(self.new_work, timeout)
            return []
        finally:
            self._idle_pop = None
        if popped is None:
            return []
        try:
            return await self._confirm(popped.job_type, [popped.id], slots)
        except BackendUnavailable as exc:
            with contextlib.suppress(BackendUnavailable):
                await self._index.restore_ids(popped.job_type, [popped.id], [popped.score])
            log.warning(
                "claim failed; backing off", extra={"action": "claim_jobs", "error": str(exc)}
            )
            await _wait(self._interrupted, 0.05)
        except Exception:  # as in the runner's claim loop: log loudly, never let it die
            log.exception(
                "claim failed unexpectedly; backing off",
                extra={"action": "claim_jobs", "worker_id": self.worker_id},
            )
            await _wait(self._interrupted, 1.0)
        return []

    async def _claim_type(self, job_type: str, want: int, now_ms: int, start_now: int) -> Claim:
        """Through Redis normally; straight from Postgres while Redis is unreachable or this
        type's index is being rebuilt."""
        if time.monotonic() < self._postgres_until.get(job_type, 0.0):
            return await self._claim_from_postgres(job_type, want)
        try:
            popped = await self._index.claim_ids(job_type, now_ms, want)
        except BackendUnavailable as exc:
            self._use_postgres(job_type, f"redis unreachable: {exc.detail}")
            return await self._claim_from_postgres(job_type, want)
        if popped.index_lost:
            # Before this worker ever found the type indexed, an unmarked index is what a
            # fresh deployment or a new job type looks like (built in milliseconds): INFO.
            # After, it means Redis lost its data: WARNING.
            lost = job_type in self._claimed_through_redis
            reason = "redis index not marked complete; rebuilding it"
            self._use_postgres(job_type, reason, logging.WARNING if lost else logging.INFO)
            self._request_rebuild(job_type)
            return await self._claim_from_postgres(job_type, want)
        self._claimed_through_redis.add(job_type)
        if job_type in self._degraded:
            self._back_to_redis(job_type)
        if not popped.ids:
            return Claim([], popped.wait_ms)
        try:
            jobs = await self._confirm(job_type, popped.ids, start_now)
        except BackendUnavailable:
            # Postgres never saw these ids claimed: put them back rather than leave them to
            # the reconciler.
            with contextlib.suppress(BackendUnavailable):
                await self._index.restore_ids(job_type, popped.ids, popped.scores)
            raise
        if self._not_due:
            # Postgres says some are not due yet: our clock is off. Read it again, and wait
            # a moment rather than pop the same ids again at once (no busy loop).
            self._not_due = False
            self.clock.invalidate()
            return Claim(jobs, NOT_DUE_BACKOFF_MS)
        return Claim(jobs, popped.wait_ms)

    async def _claim_from_postgres(self, job_type: str, want: int) -> Claim:
        rows = await self._store.claim_jobs_from_postgres(
            job_type, want, self._next_lease_owner(), self.settings.lease_seconds
        )
        jobs = [_claimed(row, uuid.UUID(row["id"]), ClaimSource.POSTGRES) for row in rows]
        poll_ms = int(self.settings.fallback_poll_seconds * 1000)
        return Claim(jobs, 0 if len(jobs) == want else poll_ms)

    def _use_postgres(self, job_type: str, reason: str, level: int = logging.WARNING) -> None:
        self._postgres_until[job_type] = time.monotonic() + REDIS_RETRY_SECONDS
        if job_type not in self._degraded:
            self._degraded.add(job_type)
            if self._metrics is not None:
                self._metrics.redis_fallback.labels(job_type).set(1)
            log.log(
                level,
                "claiming straight from postgres",
                extra={
                    "action": "claim_mode",
                    "job_type": job_type,
                    "mode": "postgres",
                    "reason": reason,
                    "worker_id": self.worker_id,
                },
            )

    def _back_to_redis(self, job_type: str) -> None:
        self._degraded.discard(job_type)
        if self._metrics is not None:
            self._metrics.redis_fallback.labels(job_type).set(0)
        log.info(  # a recovery: the warning was logged when it began
            "claiming through redis again",
            extra={
                "action": "claim_mode",
                "job_type": job_type,
                "mode": "redis",
                "worker_id": self.worker_id,
            },
        )

    def _request_rebuild(self, job_type: str) -> None:
        """Rebuild the lost index in the background (one rebuild per type at a time), then
        go back to Redis at the next claim."""
        if self._rebuild_index is None or job_type in self._rebuilds:
            return
        task = asyncio.create_task(self._rebuild(self._rebuild_index, job_type))
        self._rebuilds[job_type] = task
        task.add_done_callback(lambda _: self._rebuilds.pop(job_type, None))

    async def _rebuild(self, rebuild_index: RebuildIndex, job_type: str) -> None:
        try:
            result = await rebuild_index([job_type])
        except BackendUnavailable as exc:
            log.warning(
                "index rebuild failed",
                extra={"action": "rebuild_index", "job_type": job_type, "error": str(exc)},
            )
            return
        if result:  # else another process is rebuilding it: retry Redis at the usual time
            self._postgres_until[job_type] = 0.0
            self.new_work.set()  # claim through the rebuilt index right away

    async def _confirm(
        self, job_type: str, ids: Sequence[uuid.UUID], start_now: int
    ) -> list[ClaimedJob]:
        """Claim popped ids in Postgres; the first ``start_now`` start at once (see the
        claim_jobs statement for the others). Returns the confirmed jobs in pop order."""
        rows = await self._store.claim_jobs(
            job_type, ids, self._next_lease_owner(), self.settings.lease_seconds, start_now
        )
        by_id = {row["id"]: row for row in rows}
        jobs, unconfirmed = [], []
        for job_id in ids:  # pop order is claim order
            row = by_id.get(str(job_id))
            if row is not None:
                jobs.append(_claimed(row, job_id, ClaimSource.REDIS))
            else:
                unconfirmed.append(job_id)
        if unconfirmed:
            entries = await self._reindex_still_queued(unconfirmed)
            # Every popped id could start now, so a queued one was refused as not due yet.
            # (Claimed ahead, a job on its last attempt is refused while due: see claim_jobs.)
            self._not_due = self._not_due or bool(entries and start_now >= len(ids))
        return jobs

    async def _reindex_still_queued(self, ids: list[uuid.UUID]) -> list[IndexEntry]:
        """Postgres refused some popped ids: finished or cancelled ones are simply dropped;
        ones still queued (not due yet by Postgres' clock) go back to the index."""
        entries = await self._store.find_queued_jobs(ids)
        log.debug(
            "dropped ids postgres did not confirm",
            extra={
                "action": "claim_jobs",
                "dropped": len(ids) - len(entries),
                "reindexed": len(entries),
            },
        )
        if entries:
            with contextlib.suppress(BackendUnavailable):
                await self._index.add_jobs(entries)
        return entries

    def _next_lease_owner(self) -> str:
        """The lease owner of one claim: this worker's id and the claim's number, so that
        no two claims, even of the same job with the same attempt number (a claim lost in
        a Postgres crash and made again), share a fence."""
        self._claims += 1
        return f"{self.worker_id}/{self._claims}"


def _claimed(row: Job, job_id: uuid.UUID, source: ClaimSource) -> ClaimedJob:
    return ClaimedJob(row, Attempt(job_id, row["attempts"], row["lease_owner"]), source)


async def _wait(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)


def _cancelling() -> int:
    """Whether the current task itself is being cancelled (Task.cancelling, 3.11+)."""
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


def _sooner(a: int, b: int) -> int:
    """Combine two wait_ms values: 0 (work now) wins, -1 means nothing is scheduled."""
    if a < 0:
        return b
    if b < 0:
        return a
    return min(a, b)
