"""One attempt, from its handler's start to the Outcome the worker records: the input
check, the handler (handler_call.py), its timeout, and what becomes of a handler that
outlives its timeout or the shutdown grace. The runner decides when attempts start; this
decides how each one ends.

An attempt keeps its slot (and its lease) until its handler has really stopped: a handler
past its timeout is failed at the timeout (by the lease keeper if it does not let go), but
its retry is written only once it has stopped, so a job never runs twice at once.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time

from queue_core.live import bind, unbind
from queue_core.models import Attempt, Failure
from queue_core.telemetry.metrics import Metrics

from .deadlines import Deadlines
from .executor import Decide, Outcome, OutcomeKind
from .handler_call import (
    Ended,
    Raised,
    Returned,
    SyncHandlers,
    TimedOut,
    call_async,
    described,
    wait_thread,
)
from .lease_keeper import LeaseKeeper
from .live_updates import LiveUpdates
from .outcomes import OutcomeBuffer
from .running import RunningJob

log = logging.getLogger(__name__)


class AfterCancel(enum.Enum):
    """What becomes of an attempt cancelled at the end of the shutdown grace."""

    GIVE_BACK = "give back"  # its handler stopped: released, attempt not counted
    KEEP_LEASE = "keep lease"  # its handler did not stop: leased until this process is gone
    RECORDED = "recorded"  # its handler finished after all: its outcome is written


class Attempts:
    def __init__(
        self,
        decide: Decide,
        keeper: LeaseKeeper,
        outcomes: OutcomeBuffer,
        sync_handlers: SyncHandlers,
        live: LiveUpdates,
        deadlines: Deadlines,
        worker_id: str,
        metrics: Metrics | None = None,
    ) -> None:
        """``live`` takes what handlers report (progress, emit) while they run;
        ``deadlines`` times async handlers out."""
        self._live = live
        self._deadlines = deadlines
        self._decide = decide
        self._keeper = keeper
        self._outcomes = outcomes
        self._sync_handlers = sync_handlers
        self.worker_id = worker_id
        self._metrics = metrics

    async def run(self, running: RunningJob) -> None:
        """Run one attempt and hand its Outcome to the OutcomeBuffer; log how it ended (one
        INFO line when it succeeded, a WARNING with the error when it failed)."""
        started = time.perf_counter()
        token = bind(running.attempt, running.job, self._live)  # progress(), emit()
        try:
            outcome = await self._run(running)
        except Exception as exc:  # a bug, or objects a handler made that break our own code
            log.exception(
                "the attempt's end could not be processed; it fails",
                extra={"action": "attempt", "job_id": str(running.attempt.id)},
            )
            outcome = self._decide.failure(
                running.job,
                running.attempt,
                f"InternalError: the attempt's end could not be processed ({_name(exc)})",
            )
        finally:
            unbind(token)
        await self._live.finish(running.attempt)
        running.decided = True
        if outcome is not None:
            self._log(outcome, time.perf_counter() - started)
            await self._outcomes.add(outcome)

    async def _run(self, running: RunningJob) -> Outcome | None:
        contract, job, attempt = running.contract, running.job, running.attempt
        rejected = self._decide.rejected_input(contract, job, attempt)
        if rejected is not None:
            self._keeper.decide(attempt)
            return rejected
        self._keeper.started(attempt, contract.timeout)
        started = time.perf_counter()
        ended: Ended | TimedOut
        if contract.is_async:
            # The handler gets a copy: what it does to the dict cannot change our decisions.
            deadline = (
                None
                if contract.timeout is None
                else self._deadlines.start(attempt, contract.timeout)
            )
            ended = await call_async(contract.handler, dict(job), attempt, deadline)
        else:
            running.thread = await self._sync_handlers.start(contract.handler, dict(job))
            ended = await wait_thread(running.thread, contract.timeout)
        if self._metrics is not None:
            self._metrics.handler_seconds.labels(running.job_type).observe(
                time.perf_counter() - started
            )
        if not self._keeper.decide(attempt):
            # The keeper timed it out while it blocked the loop or ignored cancellation: a
            # final attempt is already failed; one with a retry left is queued again now.
            return self._retry_after_keeper_timeout(running)
        if isinstance(ended, TimedOut):
            return await self._timed_out(running, ended)
        if isinstance(ended, Raised):
            ended = await described(ended)
        return self._decide.ended(contract, job, attempt, ended)

    def _retry_after_keeper_timeout(self, running: RunningJob) -> Outcome | None:
        timed_out = self._decide.timed_out(running.contract, running.job, running.attempt)
        return None if timed_out.kind is OutcomeKind.FAILED else timed_out

    async def _timed_out(self, running: RunningJob, ended: TimedOut) -> Outcome | None:
        """Past its timeout. An async handler has stopped by now (or returned late: its
        result is discarded). A thread runs on: a final attempt fails now, a retry is noted
        now and written once the thread returns."""
        outcome = self._decide.timed_out(running.contract, running.job, running.attempt)
        if ended.thread is None or ended.thread.done():
            return outcome
        log.warning(
            "handler past its timeout is still running; its slot waits for it",
            extra={
                "action": "timeout",
                "job_id": str(running.attempt.id),
                "job_type": running.job_type,
                "worker_id": self.worker_id,
            },
        )
        if outcome.kind is OutcomeKind.FAILED:
            self._log(outcome, running.contract.timeout or 0.0)
            await self._outcomes.add(outcome)
            await asyncio.shield(ended.thread)
            return None
        self._keeper.note(Failure(running.attempt, outcome.error or "", outcome.detail))
        await asyncio.shield(ended.thread)
        return outcome

    def _log(self, outcome: Outcome, seconds: float) -> None:
        succeeded = outcome.kind is OutcomeKind.SUCCEEDED
        level = logging.INFO if succeeded else logging.WARNING
        if not log.isEnabledFor(level):
            return  # a busy worker at WARNING: build nothing for a line nobody reads
        fields: dict[str, object] = {
            "action": "attempt",
            "job_id": str(outcome.attempt.id),
            "job_type": outcome.job_type,
            "attempt": outcome.attempt.attempt,
            "outcome": outcome.kind.value,
            "duration_ms": round(seconds * 1000, 1),
            "worker_id": self.worker_id,
        }
        if succeeded:
            log.info("attempt succeeded", extra=fields)
            return
        fields["error"] = outcome.error
        retrying = outcome.kind is OutcomeKind.RETRY
        log.warning("attempt failed; retrying" if retrying else "attempt failed", extra=fields)

    def lost(self, running: RunningJob) -> None:
        """Its lease is gone (cancelled, or rescued after an outage): stop its handler; what
        it returns is discarded (the fence rejects it)."""
        if running.task is None:
            return
        running.task.cancel()
        if self._metrics is not None:
            self._metrics.leases_lost.labels(running.job_type).inc()
        log.warning(
            "lease lost: handler cancelled",
            extra={
                "action": "lease_lost",
                "job_id": str(running.attempt.id),
                "attempt": running.attempt.attempt,
                "worker_id": self.worker_id,
            },
        )

    async def cancel(self, unfinished: list[RunningJob], settle_seconds: float) -> list[Attempt]:
        """The grace is over: cancel these attempts and give their handlers ``settle_seconds``
        to stop. Returns the attempts to give back (their handler stopped); the outcome of
        one that finished after all is recorded; one that did not stop keeps its lease."""
        tasks = [r.task for r in unfinished if r.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=settle_seconds)
        threads = [r.thread for r in unfinished if r.thread is not None and not r.thread.done()]
        if threads:
            await asyncio.wait(threads, timeout=settle_seconds)
        stopped = []
        for r in unfinished:
            after = await self._after_cancel(r)
            if after is AfterCancel.GIVE_BACK:
                stopped.append(r.attempt)
        return stopped

    async def _after_cancel(self, r: RunningJob) -> AfterCancel:
        if (r.task is not None and not r.task.done()) or (
            r.thread is not None and not r.thread.done()
        ):
            log.warning(
                "handler did not stop; its job runs again once its lease expires",
                extra={
                    "action": "worker_stop",
                    "job_id": str(r.attempt.id),
                    "job_type": r.job_type,
                    "worker_id": self.worker_id,
                },
            )
            return AfterCancel.KEEP_LEASE
        if r.decided:
            return AfterCancel.RECORDED  # it finished in the settle time and was recorded
        if r.thread is not None:  # a thread that finished after its attempt was cancelled
            ended = r.thread.result()
            if isinstance(ended, Raised):
                ended = await described(ended)
            if isinstance(ended, Returned | Raised) and self._keeper.decide(r.attempt):
                await self._outcomes.add(self._decide.ended(r.contract, r.job, r.attempt, ended))
                return AfterCancel.RECORDED
        return AfterCancel.GIVE_BACK


def _name(exc: BaseException) -> str:
    try:
        return str(type(exc).__qualname__)
    except Exception:  # a hostile type
        return "Exception"
