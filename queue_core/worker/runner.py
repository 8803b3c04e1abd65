"""JobRunnerService: the worker. Claims jobs (claimer.py: through the Redis index,
confirmed in Postgres), runs their handlers, and records outcomes in batches.

1. the claim loop asks the Claimer for as many jobs as it has room for: free slots, plus
   the claim-ahead room while jobs are short (prefetch.py), and takes what it returns;
2. each claimed job waits in ClaimedAhead until a slot frees, then its handler runs
   (handler_call.py: in a task, or a thread for a plain function) and its end becomes an
   Outcome (executor.py) for the OutcomeBuffer;
3. the LeaseKeeper (lease_keeper.py), a thread of its own, renews every lease the worker
   holds, whatever its handlers do to the event loop, and reports lost ones, whose
   handlers are cancelled.
An idle worker waits for work in the Claimer (a Redis blocking pop), never on a fixed poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from queue_core.contracts import ContractRegistry
from queue_core.errors import BackendUnavailable, HandlerNotFound
from queue_core.models import Attempt, JobEvent
from queue_core.ports import EventSink, JobStore, ReadyIndex
from queue_core.retry import RetryPolicy
from queue_core.settings import Settings
from queue_core.telemetry.metrics import Metrics

from .attempt import Attempts
from .claimer import ClaimedJob, Claimer, RebuildIndex
from .deadlines import Deadlines
from .executor import Decide
from .handler_call import SyncHandlers
from .lease_backstop import BackstopConfig, LeaseBackstop
from .lease_keeper import BEAT_SECONDS, KeeperStore, LeaseKeeper
from .live_updates import LiveUpdates
from .outcomes import OutcomeBuffer
from .prefetch import ClaimedAhead, Clock, Waiting, waiting
from .release import release_jobs
from .running import Running, RunningJob

log = logging.getLogger(__name__)

FINAL_FLUSH_SECONDS = 10.0
"""A stopping worker tries this long to write its last outcomes."""
RELEASE_SECONDS = 6.0
"""A stopping worker tries this long to give unfinished jobs back (release.py's tries)."""
CANCEL_SETTLE_SECONDS = 1.0
"""After the grace, a cancelled handler has this long to stop before its job is left to
its lease (it runs again elsewhere only once this process is gone)."""
IDLE_WAIT_MIN_SECONDS = 0.01
"""Shortest idle wait: a BZPOPMIN timeout rounded down to 0 would block without end."""
STARTED_RELEASE_DELAY_SECONDS = 5.0
"""A job given back at shutdown after its handler started is due again only this much
later: whatever its handler left running (a thread from asyncio.to_thread) ends with the
stopping worker first, instead of overlapping the job's next run elsewhere."""
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
        lease_store: Callable[[], Awaitable[KeeperStore]],
        concurrency: int | None = None,
        worker_id: str | None = None,
        rebuild_index: RebuildIndex | None = None,
        index_committed_jobs: Callable[[], Coroutine[Any, Any, None]] | None = None,
        events: EventSink | None = None,
        metrics: Metrics | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        """``lease_store()`` opens the lease keeper's own Postgres connection (connect()
        passes store.open_lease_store); ``rebuild_index(types)`` re-indexes types whose
        Redis index was lost; ``index_committed_jobs()`` runs in the background to index
        jobs created in callers' transactions (enqueue/committed_jobs.py); ``events`` is told
        of status changes and of what handlers report (progress, emit) for live readers.
        ``clock``: seconds on a monotonic clock, for the claim-ahead timings."""
        super().__init__()  # the job contracts this worker runs (register_handler)
        self.settings = settings or Settings()
        self.worker_id = worker_id or new_worker_id()
        self.concurrency = concurrency or self.settings.concurrency
        self._store = store
        self._index = index
        policy = RetryPolicy(self.settings.retry_base_seconds, self.settings.retry_cap_seconds)
        self._running = Running()
        prefetch = self.settings.prefetch
        self._ahead = ClaimedAhead(
            2 * self.concurrency if prefetch is None else prefetch,
            self.settings.prefetch_max_job_ms / 1000.0,
            PREFETCH_MAX_WAIT_SECONDS,
            clock,
        )
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()  # releases, held-back outcomes
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
            on_written=lambda written: self._keeper.forget([o.attempt for o in written]),
            events=events,
            metrics=metrics,
        )
        self._events = events
        self._live = LiveUpdates(store, events or _NoEvents())
        self._keeper = LeaseKeeper(
            lease_store,
            self.settings.lease_seconds,
            self.worker_id,
            on_lost=self._lost,
            pending_outcomes=self._outcomes.pending_records,
            backstop=self._backstop() if self.settings.lease_backstop else None,
        )
        self._deadlines = Deadlines(
            BEAT_SECONDS,
            culprit=self._keeper.stall_culprit,
            on_extend=self._keeper.extend_deadline,
        )
        self._attempts = Attempts(
            Decide(policy, self.settings.max_output_bytes),
            self._keeper,
            self._outcomes,
            SyncHandlers(self.concurrency),
            self._live,
            self._deadlines,
            self.worker_id,
            metrics,
        )

    def _backstop(self) -> LeaseBackstop:
        s = self.settings
        return LeaseBackstop(
            BackstopConfig(
                s.database_url,
                s.db_schema,
                self.worker_id,
                s.lease_seconds,
                s.log_json,
                s.log_level,
            )
        )

    @property
    def job_types(self) -> list[str]:
        return sorted(self._contracts)

    @property
    def running_count(self) -> int:
        return len(self._running)

    def stop(self) -> None:
        """Ask run() to stop claiming, let running jobs finish (up to the grace period),
        give the rest back, flush outcomes and return. Safe from a signal handler."""
        self._request_stop()
        self._stopping.set()
        self._claimer.interrupt()
        self._slot_freed.set()

    def _request_stop(self) -> None:
        """Tell the lease keeper how long a stop may take: the grace, giving jobs back, the
        last write and a margin; past it (or past the grace while a handler blocks the
        loop) the keeper ends the process."""
        grace = self.settings.shutdown_grace_seconds + CANCEL_SETTLE_SECONDS
        self._keeper.request_stop(grace, grace + RELEASE_SECONDS + FINAL_FLUSH_SECONDS + 5.0)

    async def run(self, *, handle_signals: bool = False) -> None:
        """Work until stop(). With ``handle_signals`` (the main thread only), SIGTERM and
        SIGINT call stop(), even while a handler blocks the event loop (what ``hybridq
        worker`` does); the previous handlers come back when run() returns. Raises
        HandlerNotFound when no handler is registered."""
        if not self._contracts:
            raise HandlerNotFound("no handler registered: call register_handler() first")
        restore = self._install_signal_handlers() if handle_signals else {}
        try:
            await self._run()
        finally:
            for sig, previous in restore.items():
                signal.signal(sig, previous)

    def _install_signal_handlers(self) -> dict[int, Any]:
        """Python-level handlers, not loop.add_signal_handler: those run only when the loop
        gets to them, which a handler blocking the loop would prevent."""
        loop = asyncio.get_running_loop()

        def on_signal(signum: int, frame: object) -> None:
            self._request_stop()
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(self.stop)

        return {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    async def _run(self) -> None:
        await self._sync_clock()
        self._keeper.start()
        background = [
            asyncio.create_task(self._index.listen(self.job_types, self._claimer.new_work)),
            asyncio.create_task(self._outcomes.run()),
            asyncio.create_task(self._beat()),
            asyncio.create_task(self._live.run()),
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
            for task in [*background, *self._background]:
                task.cancel()
            await asyncio.gather(*background, *self._background, return_exceptions=True)
            await self._claimer.aclose()
            await asyncio.to_thread(self._keeper.finish)
            log.info("worker stopped", extra={"action": "worker_stop", "worker_id": self.worker_id})

    async def _beat(self) -> None:
        """The loop's pulse, which the lease keeper watches for stalls; a stall just ended
        is paid back to the handlers that did not cause it (deadlines.py)."""
        while True:
            now = time.monotonic()
            self._deadlines.tick(now)
            self._keeper.beat(now)
            await asyncio.sleep(BEAT_SECONDS)

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
            final = c.job["attempts"] > c.job["max_retries"]
            self._keeper.hold(c.attempt, c.job["job_type"], final=final)
            self._ahead.push(waiting(c.job, c.attempt, now))
        if claimed:
            if self._events is not None:
                self._events.publish([_running(c) for c in claimed])
            self._fill_slots()

    def _fill_slots(self) -> None:
        """Start claimed jobs, in claim order, while slots are free."""
        while len(self._running) < self.concurrency and not self._stopping.is_set():
            next_job = self._ahead.pop()
            if next_job is None:
                return
            job, attempt = next_job.job, next_job.attempt
            running = RunningJob(job, attempt, self._contracts[job["job_type"]])
            running.task = asyncio.create_task(self._run_job(running))
            self._running.add(running)
            self._ahead.started(attempt.id)

    async def _run_job(self, running: RunningJob) -> None:
        try:
            await self._attempts.run(running)
        finally:
            if self._running.remove(running.attempt):
                self._ahead.finished(running.attempt.id)
            self._fill_slots()
            self._slot_freed.set()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _release_stale(self) -> None:
        """Hand back the jobs claimed ahead that waited too long for a slot (the running
        jobs turned out long): another worker may be idle."""
        stale = self._ahead.take_stale()
        if stale:
            self._spawn(self._give_back_stale(stale))

    async def _give_back_stale(self, stale: list[Waiting]) -> None:
        """Release stale claimed-ahead jobs; if Postgres will not take them now, they wait
        here again (leased, renewed) and start when a slot frees, or go at the next try:
        never left leased and idle, never run out of order with a counted attempt."""
        if not await self._give_back([w.attempt for w in stale]):
            now = self._ahead.clock()
            for w in stale:
                if self._keeper.holds(w.attempt):
                    # waiting anew: the next try to give it back is a wait period away
                    self._ahead.push(dataclasses.replace(w, since=now))
            self._fill_slots()

    async def _give_back(self, attempts: list[Attempt], delay_seconds: float = 0.0) -> bool:
        """Release jobs to the queue, attempt not counted, due in ``delay_seconds``; False
        when Postgres refused."""
        if not attempts:
            return True
        released = await release_jobs(
            self._store, self._index, attempts, self.worker_id, delay_seconds
        )
        if released:
            self._keeper.forget(attempts)
        return released

    def _lost(self, attempts: list[Attempt]) -> None:
        """From the lease keeper: these leases are gone (cancelled, or rescued after an
        outage). Their handlers are cancelled; whatever they return is discarded."""
        for attempt in attempts:
            self._ahead.discard(attempt.id)
            running = self._running.get(attempt)
            if running is not None:
                self._attempts.lost(running)

    async def _finish_running(self, grace: float) -> None:
        """Give back the jobs claimed ahead; let running jobs finish for ``grace`` seconds;
        then cancel the rest. A handler that stops in time is given back, attempt not
        counted; one that finished after all has its outcome written (never given back);
        one that does not stop keeps its lease until this process is gone, then runs again
        once the lease expires."""
        if self._background:
            await asyncio.wait(self._background, timeout=RELEASE_SECONDS)
        await self._give_back([w.attempt for w in self._ahead.take_all()])
        if not self._running:
            return
        await asyncio.wait([r.task for r in self._running if r.task], timeout=grace)
        unfinished = [r for r in self._running if r.task is not None and not r.task.done()]
        stopped = await self._attempts.cancel(unfinished, CANCEL_SETTLE_SECONDS)
        await self._give_back(stopped, STARTED_RELEASE_DELAY_SECONDS)

    @staticmethod
    async def _wait(event: asyncio.Event, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)


def _running(claimed: ClaimedJob) -> JobEvent:
    job = claimed.job
    return JobEvent(
        str(claimed.attempt.id),
        job["job_type"],
        job.get("user_id"),
        status="running",
        attempts=claimed.attempt.attempt,
    )


class _NoEvents:
    """An EventSink that tells nobody (a runner built without one, in tests)."""

    def publish(self, events: object) -> None:
        pass

    def append(self, job_type: str, job_id: str, data_json: str) -> None:
        pass
