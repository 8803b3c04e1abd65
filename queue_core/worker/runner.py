"""JobRunnerService: the worker. Claims jobs (claimer.py: through the Redis index,
confirmed in Postgres), runs their handlers, and records outcomes in batches.

1. the claim loop asks the Claimer for as many jobs as it has room for: free slots, plus
   the claim-ahead room while jobs are short (prefetch.py), and takes what it returns;
2. each claimed job waits in ClaimedAhead until a slot frees, then runs in its own task;
3. its outcome goes to the OutcomeBuffer; the heartbeat renews every lease it holds
   (leases.py) and cancels the handlers of jobs whose lease was lost.
An idle worker waits for work in the Claimer (a Redis blocking pop), never on a fixed poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import socket
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from queue_core.contracts import ContractRegistry
from queue_core.errors import BackendUnavailable, HandlerNotFound
from queue_core.models import Attempt, Job
from queue_core.ports import JobStore, ReadyIndex
from queue_core.retry import RetryPolicy
from queue_core.settings import Settings
from queue_core.telemetry.metrics import Metrics

from .claimer import ClaimedJob, Claimer, RebuildIndex
from .executor import execute
from .leases import Leases
from .outcomes import OutcomeBuffer
from .prefetch import ClaimedAhead, Clock, Waiting, waiting

log = logging.getLogger(__name__)

FINAL_FLUSH_SECONDS = 10.0
"""A stopping worker tries this long to write its last outcomes."""
IDLE_WAIT_MIN_SECONDS = 0.01
"""Shortest idle wait: a BZPOPMIN timeout rounded down to 0 would block without end."""
PREFETCH_MAX_WAIT_SECONDS = 1.0
"""A job claimed ahead that waited this long for a slot goes back to the queue."""


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True)
class RunningJob:
    job: Job
    attempt: Attempt
    task: asyncio.Task[None]

    @property
    def job_type(self) -> str:
        return str(self.job["job_type"])


class JobRunnerService(ContractRegistry):
    def __init__(
        self,
        store: JobStore,
        index: ReadyIndex,
        settings: Settings | None = None,
        *,
        concurrency: int | None = None,
        worker_id: str | None = None,
        rebuild_index: RebuildIndex | None = None,
        index_committed_jobs: Callable[[], Coroutine[Any, Any, None]] | None = None,
        metrics: Metrics | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        """``rebuild_index(types)`` re-indexes types whose Redis index was lost (connect()
        passes the reconciler's); ``index_committed_jobs()`` runs in the background to index
        jobs created in callers' transactions (enqueue/committed_jobs.py). ``clock``: seconds
        on a monotonic clock, for the claim-ahead timings."""
        super().__init__()  # the job contracts this worker runs (register_handler)
        self.settings = settings or Settings()
        self.worker_id = worker_id or new_worker_id()
        self.concurrency = concurrency or self.settings.concurrency
        self._store = store
        self._index = index
        self._policy = RetryPolicy(
            self.settings.retry_base_seconds, self.settings.retry_cap_seconds
        )
        self._running: dict[uuid.UUID, RunningJob] = {}
        self._leases = Leases(store, index, self.settings.lease_seconds, self.worker_id)
        prefetch = self.settings.prefetch
        self._ahead = ClaimedAhead(
            2 * self.concurrency if prefetch is None else prefetch,
            self.settings.prefetch_max_job_ms / 1000.0,
            PREFETCH_MAX_WAIT_SECONDS,
            clock,
        )
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._releases: set[asyncio.Task[None]] = set()  # stale claimed-ahead jobs going back
        self._claimer = Claimer(
            store,
            index,
            self.settings,
            self.worker_id,
            rebuild_index=rebuild_index,
            metrics=metrics,
        )
        self._index_committed_jobs = index_committed_jobs
        self._metrics = metrics
        self._outcomes = OutcomeBuffer(
            store,
            index,
            self.worker_id,
            flush_interval=self.settings.flush_interval_ms / 1000.0,
            batch_max=self.settings.flush_batch_max,
            on_written=lambda written: self._leases.forget([o.attempt for o in written]),
            metrics=metrics,
        )

    @property
    def job_types(self) -> list[str]:
        return sorted(self._contracts)

    @property
    def running_count(self) -> int:
        return len(self._running)

    def stop(self) -> None:
        """Ask run() to stop claiming, let running jobs finish (up to the grace period),
        release the rest, flush outcomes and return."""
        self._stopping.set()
        self._claimer.interrupt()
        self._slot_freed.set()

    async def run(self) -> None:
        if not self._contracts:
            raise HandlerNotFound("no handler registered: call register_handler() first")
        await self._sync_clock()
        background = [
            asyncio.create_task(self._index.listen(self.job_types, self._claimer.new_work)),
            asyncio.create_task(self._outcomes.run()),
            asyncio.create_task(self._heartbeat_loop()),
            asyncio.create_task(  # stats show queued types that no live worker runs
                self._index.keep_worker_announced(
                    self.worker_id, self.job_types, self.settings.lease_seconds
                )
            ),
        ]
        if self._index_committed_jobs is not None:
            background.append(asyncio.create_task(self._index_committed_jobs()))
        log.info(
            "worker started",
            extra={
                "action": "worker_start",
                "worker_id": self.worker_id,
                "job_types": self.job_types,
                "concurrency": self.concurrency,
            },
        )
        try:
            await self._claim_loop()
            await self._finish_running(self.settings.shutdown_grace_seconds)
            await self._final_flush()
        finally:
            for task in [*background, *self._releases]:
                task.cancel()
            await asyncio.gather(*background, *self._releases, return_exceptions=True)
            await self._claimer.aclose()
            log.info("worker stopped", extra={"action": "worker_stop", "worker_id": self.worker_id})

    async def _final_flush(self) -> None:
        """Write the outcomes still buffered. While Postgres is down this could wait
        forever; a stopping worker gives it FINAL_FLUSH_SECONDS, then exits: those jobs'
        leases expire and they run again (at-least-once), nothing is marked done."""
        try:
            await asyncio.wait_for(self._outcomes.flush(), FINAL_FLUSH_SECONDS)
        except TimeoutError:
            log.error(
                "outcomes not written before exit; those jobs will run again",
                extra={
                    "action": "flush_outcomes",
                    "pending": len(self._outcomes),
                    "worker_id": self.worker_id,
                },
            )

    async def _sync_clock(self) -> None:
        delay = 0.1
        while True:
            try:
                await self._claimer.clock.sync(self._store)
                return
            except BackendUnavailable as exc:
                log.warning(
                    "postgres unavailable at start; retrying",
                    extra={"action": "worker_start", "error": str(exc)},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _claim_loop(self) -> None:
        backoff = 0.05
        while not self._stopping.is_set():
            stale_in = self._ahead.seconds_until_stale()
            if stale_in == 0:
                self._release_stale()
                continue
            ahead_room = 0 if self._claimer.from_postgres else self._ahead.allowance()
            capacity = self.concurrency + ahead_room
            free = capacity - len(self._running) - len(self._ahead)
            # With jobs waiting here already, claim only once half the room is free: fewer,
            # larger claims (each costs two round trips whatever its size).
            if free <= 0 or (len(self._ahead) and free < capacity // 2):
                await self._wait_for_slot(stale_in)
                continue
            self._claimer.new_work.clear()
            try:
                claim = await self._claimer.claim(self.job_types, free, self._free_slots())
            except BackendUnavailable as exc:
                log.warning(
                    "claim failed; backing off", extra={"action": "claim_jobs", "error": str(exc)}
                )
                await self._wait(self._stopping, backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            except Exception:
                # A bug or an error no adapter translated: the worker must keep serving the
                # jobs it holds, so log it loudly and try again, never die mid-run.
                log.exception(
                    "claim failed unexpectedly; backing off",
                    extra={"action": "claim_jobs", "worker_id": self.worker_id},
                )
                await self._wait(self._stopping, 1.0)
                continue
            backoff = 0.05
            self._take(claim.jobs)
            if len(claim.jobs) >= free:
                continue
            if claim.wait_ms == 0:
                if self._free_slots():
                    continue  # more is ready, and slots to run it
                # More is ready but only claim-ahead room is left, which a job on its last
                # attempt is refused (see claim_jobs): claim again once a slot frees.
                await self._wait_for_slot(None)
                continue
            timeout = self.settings.idle_poll_seconds
            if claim.wait_ms > 0:
                timeout = min(timeout, claim.wait_ms / 1000.0)
            if stale_in is not None:
                timeout = min(timeout, stale_in)
            jobs = await self._claimer.idle(
                self.job_types, max(timeout, IDLE_WAIT_MIN_SECONDS), self._free_slots()
            )
            self._take(jobs)

    async def _wait_for_slot(self, stale_in: float | None) -> None:
        self._slot_freed.clear()
        timeout = self.settings.idle_poll_seconds
        if stale_in is not None:
            timeout = min(timeout, stale_in)
        await self._wait(self._slot_freed, timeout)

    def _free_slots(self) -> int:
        """Slots a job claimed now would start in at once."""
        return max(0, self.concurrency - len(self._running) - len(self._ahead))

    def _take(self, claimed: list[ClaimedJob]) -> None:
        """Hold the leases of freshly claimed jobs and start what the slots allow."""
        now = self._ahead.clock()
        for c in claimed:
            if self._metrics is not None:
                self._metrics.claimed.labels(c.job["job_type"], c.source).inc()
                waited = (c.job["started_at"] - c.job["scheduled_for"]).total_seconds()
                self._metrics.enqueue_to_start_seconds.labels(c.job["job_type"]).observe(
                    max(waited, 0)
                )
            self._leases.hold(c.attempt)
            self._ahead.push(waiting(c.job, c.attempt, now))
        if claimed:
            self._fill_slots()

    def _fill_slots(self) -> None:
        """Start claimed jobs, in claim order, while slots are free."""
        while len(self._running) < self.concurrency and not self._stopping.is_set():
            next_job = self._ahead.pop()
            if next_job is None:
                return
            task = asyncio.create_task(self._run_job(next_job.job, next_job.attempt))
            self._running[next_job.attempt.id] = RunningJob(next_job.job, next_job.attempt, task)
            self._ahead.started(next_job.attempt.id)

    async def _run_job(self, job: Job, attempt: Attempt) -> None:
        try:
            started = time.perf_counter()
            outcome = await execute(self._contracts[job["job_type"]], job, attempt, self._policy)
            if self._metrics is not None:
                self._metrics.handler_seconds.labels(job["job_type"]).observe(
                    time.perf_counter() - started
                )
            await self._outcomes.add(outcome)
        finally:
            running = self._running.get(attempt.id)
            if running is not None and running.attempt == attempt:
                del self._running[attempt.id]
                self._ahead.finished(attempt.id)
            self._fill_slots()
            self._slot_freed.set()

    def _release_stale(self) -> None:
        """Hand back the jobs claimed ahead that waited too long for a slot (the running
        jobs turned out long): another worker may be idle."""
        stale = self._ahead.take_stale()
        if stale:
            task = asyncio.create_task(self._give_back(stale))
            self._releases.add(task)
            task.add_done_callback(self._releases.discard)

    async def _give_back(self, stale: list[Waiting]) -> None:
        """Release stale claimed-ahead jobs; if Postgres will not take them now, they wait
        here again (leased, renewed) and start when a slot frees, or go at the next try:
        never left leased and idle, never run out of order with a counted attempt."""
        if not await self._leases.give_back([w.attempt for w in stale]):
            now = self._ahead.clock()
            for w in stale:
                if self._leases.holds(w.attempt):
                    # waiting anew: the next try to give it back is a wait period away
                    self._ahead.push(dataclasses.replace(w, since=now))
            self._fill_slots()

    async def _heartbeat_loop(self) -> None:
        interval = self.settings.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self.heartbeat()
            except Exception:  # a heartbeat that stopped would let every lease expire
                log.exception(
                    "heartbeat failed unexpectedly",
                    extra={"action": "extend_leases", "worker_id": self.worker_id},
                )

    async def heartbeat(self) -> None:
        """Extend every lease this worker holds in one statement. A job whose lease is gone
        (cancelled, or rescued after it expired) has its handler cancelled."""
        for attempt in await self._leases.renew():
            self._ahead.discard(attempt.id)
            running = self._running.get(attempt.id)
            if running is None or running.attempt != attempt:
                continue
            running.task.cancel()
            if self._metrics is not None:
                self._metrics.leases_lost.labels(running.job_type).inc()
            log.warning(
                "lease lost: handler cancelled",
                extra={
                    "action": "lease_lost",
                    "job_id": str(attempt.id),
                    "attempt": attempt.attempt,
                    "worker_id": self.worker_id,
                },
            )

    async def _finish_running(self, grace: float) -> None:
        """Give back the jobs claimed ahead, let running jobs finish for ``grace`` seconds,
        then cancel the rest and give them back too, without counting the attempt. Jobs
        Postgres would not take back keep their leases until this process exits; the
        reconciler rescues them when those expire."""
        if self._releases:
            await asyncio.wait(self._releases, timeout=FINAL_FLUSH_SECONDS)
        unstarted = self._ahead.take_all()
        if unstarted:
            await self._leases.give_back([w.attempt for w in unstarted])
        if not self._running:
            return
        await asyncio.wait([r.task for r in self._running.values()], timeout=grace)
        unfinished = [r for r in self._running.values() if not r.task.done()]
        if not unfinished:
            return
        for r in unfinished:
            r.task.cancel()
        await asyncio.gather(*(r.task for r in unfinished), return_exceptions=True)
        await self._leases.give_back([r.attempt for r in unfinished])

    @staticmethod
    async def _wait(event: asyncio.Event, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

