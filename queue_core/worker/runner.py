"""JobRunnerService: the worker. Claims jobs (claimer.py: through the Redis index,
confirmed in Postgres), runs their handlers, and records outcomes in batches.

1. the claim loop asks the Claimer for as many jobs as it has room for: free slots, plus
   the claim-ahead room while jobs are short (prefetch.py);
2. each confirmed job waits in ClaimedAhead until a slot frees, then runs in its own task;
3. its outcome goes to the OutcomeBuffer; the heartbeat renews every lease it holds.
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
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from queue_core.contracts import ContractRegistry
from queue_core.errors import BackendUnavailable, HandlerNotFound
from queue_core.ports import Attempt, Job, JobStore, ReadyIndex
from queue_core.retry import RetryPolicy
from queue_core.settings import Settings
from queue_core.telemetry.metrics import Metrics

from .claimer import Claimer
from .executor import Outcome, execute
from .outcomes import OutcomeBuffer
from .prefetch import ClaimedAhead, Waiting, waiting

log = logging.getLogger(__name__)

FINAL_FLUSH_SECONDS = 10.0
"""A stopping worker tries this long to write its last outcomes."""
RELEASE_TRIES = 8
"""Tries to give jobs back (backoff 0.1 s doubling to 1 s: about 5 s in all)."""
IDLE_WAIT_MIN_SECONDS = 0.01
"""Shortest idle wait: a BZPOPMIN timeout rounded down to 0 would block without end."""
PREFETCH_MAX_WAIT_SECONDS = 1.0
"""A job claimed ahead that waited this long for a slot goes back to the queue."""


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class JobRunnerService(ContractRegistry):
    def __init__(
        self,
        store: JobStore,
        index: ReadyIndex,
        settings: Settings | None = None,
        *,
        concurrency: int | None = None,
        worker_id: str | None = None,
        rebuild_index: Callable[[list[str]], Awaitable[object]] | None = None,
        index_committed_jobs: Callable[[], Coroutine[Any, Any, None]] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """``rebuild_index(types)`` re-indexes types whose Redis index was lost (wiring
        passes Reconciler.rebuild_index); ``index_committed_jobs()`` runs in the background
        to index jobs created in callers' transactions (committed_jobs.py)."""
        super().__init__()  # the job contracts this worker runs (register_handler)
        self.settings = settings or Settings()
        self.worker_id = worker_id or new_worker_id()
        self.concurrency = concurrency or self.settings.concurrency
        self._store = store
        self._index = index
        self._policy = RetryPolicy(
            self.settings.retry_base_seconds, self.settings.retry_cap_seconds
        )
        # id -> (attempt, its task, job type)
        self._running: dict[uuid.UUID, tuple[Attempt, asyncio.Task[None], str]] = {}
        self._held: dict[uuid.UUID, Attempt] = {}  # claimed, until its outcome is written
        prefetch = self.settings.prefetch
        self._ahead = ClaimedAhead(
            2 * self.concurrency if prefetch is None else prefetch,
            self.settings.prefetch_max_job_ms / 1000.0,
            PREFETCH_MAX_WAIT_SECONDS,
        )
        self._new_work = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._chores: set[asyncio.Task[None]] = set()
        self._releases: set[asyncio.Task[None]] = set()  # stale claimed-ahead jobs going back
        self._claimer = Claimer(
            store,
            index,
            self.settings,
            self.worker_id,
            begin=self._start,
            spawn=self._chore,
            new_work=self._new_work,
            stopping=self._stopping,
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
            on_written=self._forget_written,
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
        self._new_work.set()
        self._slot_freed.set()

    async def run(self) -> None:
        if not self._contracts:
            raise HandlerNotFound("no handler registered: call register_handler() first")
        await self._sync_clock()
        background = [
            asyncio.create_task(self._index.listen(self.job_types, self._new_work)),
            asyncio.create_task(self._outcomes.run()),
            asyncio.create_task(self._heartbeat_loop()),
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
            for task in [*background, *self._chores, *self._releases]:
                task.cancel()
            await asyncio.gather(
                *background, *self._chores, *self._releases, return_exceptions=True
            )
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
                self._slot_freed.clear()
                timeout = self.settings.idle_poll_seconds
                if stale_in is not None:
                    timeout = min(timeout, stale_in)
                await self._wait(self._slot_freed, timeout)
                continue
            self._new_work.clear()
            try:
                started, wait_ms = await self._claimer.claim(
                    self.job_types, free, self._free_slots()
                )
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
            if started >= free:
                continue
            if wait_ms == 0:
                if self._free_slots():
                    continue  # more is ready, and slots to run it
                # More is ready but only claim-ahead room is left, which a job on its last
                # attempt is refused (claimer.py): claim again once a slot frees, not now.
                self._slot_freed.clear()
                await self._wait(self._slot_freed, self.settings.idle_poll_seconds)
                continue
            timeout = self.settings.idle_poll_seconds
            if wait_ms > 0:
                timeout = min(timeout, wait_ms / 1000.0)
            if stale_in is not None:
                timeout = min(timeout, stale_in)
            await self._claimer.idle(
                self.job_types, max(timeout, IDLE_WAIT_MIN_SECONDS), self._free_slots()
            )

    def _free_slots(self) -> int:
        """Slots a job claimed now would start in at once."""
        return max(0, self.concurrency - len(self._running) - len(self._ahead))

    def _start(self, job: Job, source: str, job_id: uuid.UUID | None = None) -> None:
        if self._metrics is not None:
            self._metrics.claimed.labels(job["job_type"], source).inc()
            waited = (job["started_at"] - job["scheduled_for"]).total_seconds()
            self._metrics.enqueue_to_start_seconds.labels(job["job_type"]).observe(max(waited, 0))
        job_id = job_id or uuid.UUID(job["id"])  # the caller's, when it has it: no parse
        attempt = Attempt(job_id, job["attempts"], job["lease_owner"])
        self._held[attempt.id] = attempt
        self._ahead.push(waiting(job, attempt))
        self._fill_slots()

    def _fill_slots(self) -> None:
        """Start claimed jobs, in claim order, while slots are free."""
        while len(self._running) < self.concurrency and not self._stopping.is_set():
            waiting = self._ahead.pop()
            if waiting is None:
                return
            job, attempt = waiting.job, waiting.attempt
            task = asyncio.create_task(self._run_job(job, attempt))
            self._running[attempt.id] = (attempt, task, job["job_type"])
            self._ahead.started(attempt.id)

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
            if self._running.get(attempt.id, (None,))[0] == attempt:
                del self._running[attempt.id]
                self._ahead.finished(attempt.id)
            self._fill_slots()
            self._slot_freed.set()

    def _release_stale(self) -> None:
        """Hand back the jobs claimed ahead that waited too long for a slot (the running
        jobs turned out long): another worker may be idle."""
        stale = self._ahead.take_stale()
        if stale:
            self._chore(self._give_back(stale), self._releases)

    async def _give_back(self, stale: list[Waiting]) -> None:
        """Release stale claimed-ahead jobs; if Postgres will not take them now, they wait
        here again (leased, renewed) and start when a slot frees, or go at the next try:
        never left leased and idle, never run out of order with a counted attempt."""
        if not await self._release([w.attempt for w in stale]):
            for w in stale:
                if self._held.get(w.attempt.id) == w.attempt:
                    # waiting anew: the next try to give it back is a wait period away
                    self._ahead.push(dataclasses.replace(w, since=time.monotonic()))
            self._fill_slots()

    async def _release(self, attempts: list[Attempt]) -> bool:
        """Give claimed jobs back to the queue, attempt not counted. False when Postgres
        would not take them within a few seconds (their leases stay held)."""
        delay = 0.1
        for _ in range(RELEASE_TRIES):
            try:
                entries = await self._store.release_jobs(attempts)
                break
            except BackendUnavailable:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        else:
            log.error(
                "could not release jobs now",
                extra={"action": "release_jobs", "jobs": len(attempts)},
            )
            return False
        for attempt in attempts:
            if self._held.get(attempt.id) == attempt:
                del self._held[attempt.id]
        with contextlib.suppress(BackendUnavailable):  # else the reconciler indexes them
            await self._index.add_jobs(entries)
        log.info("released unfinished jobs", extra={"action": "release_jobs", "jobs": len(entries)})
        return True

    def _chore(
        self, work: Coroutine[Any, Any, None], tasks: set[asyncio.Task[None]] | None = None
    ) -> None:
        """Run ``work`` in the background, kept in ``tasks`` (default: the chores) until done;
        run() cancels whatever is left when it ends."""
        kept = self._chores if tasks is None else tasks
        task = asyncio.create_task(work)
        kept.add(task)
        task.add_done_callback(kept.discard)

    def _forget_written(self, outcomes: list[Outcome]) -> None:
        for o in outcomes:
            if self._held.get(o.attempt.id) == o.attempt:
                del self._held[o.attempt.id]

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
        held = list(self._held.values())
        if not held:
            return
        try:
            kept = await self._store.extend_leases(held, self.settings.lease_seconds)
        except BackendUnavailable as exc:
            log.warning("heartbeat failed", extra={"action": "extend_leases", "error": str(exc)})
            return
        for attempt in held:
            if attempt.id in kept or self._held.get(attempt.id) != attempt:
                continue
            del self._held[attempt.id]
            self._ahead.discard(attempt.id)
            running = self._running.get(attempt.id)
            if running is not None and running[0] == attempt:
                running[1].cancel()
                if self._metrics is not None:
                    self._metrics.leases_lost.labels(running[2]).inc()
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
            await self._release([w.attempt for w in unstarted])
        if not self._running:
            return
        tasks = [task for _, task, _ in self._running.values()]
        await asyncio.wait(tasks, timeout=grace)
        unfinished = [(a, t) for a, t, _ in self._running.values() if not t.done()]
        if not unfinished:
            return
        for _, task in unfinished:
            task.cancel()
        await asyncio.gather(*(t for _, t in unfinished), return_exceptions=True)
        await self._release([a for a, _ in unfinished])

    @staticmethod
    async def _wait(event: asyncio.Event, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
