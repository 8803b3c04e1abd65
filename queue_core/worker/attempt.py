"""One attempt, from its handler's start to the Outcome the worker records: the input
check, the handler (handler_call.py), its timeout, and what becomes of a handler that
outlives its timeout or the shutdown grace. The runner decides when attempts start; this
decides how each one ends."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from queue_core.models import Attempt
from queue_core.telemetry.metrics import Metrics

from .executor import Decide, Outcome, OutcomeKind
from .handler_call import HandlerCall, Stopped, SyncHandlers
from .lease_keeper import LeaseKeeper
from .outcomes import OutcomeBuffer
from .running import RunningJob

log = logging.getLogger(__name__)


class AfterCancel(enum.Enum):
    """What becomes of an attempt cancelled at the end of the shutdown grace."""

    GIVE_BACK = "give back"  # its handler stopped: released, attempt not counted
    KEEP_LEASE = "keep lease"  # its handler did not stop: leased until this process is gone


class Attempts:
    def __init__(
        self,
        decide: Decide,
        keeper: LeaseKeeper,
        outcomes: OutcomeBuffer,
        sync_handlers: SyncHandlers,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        worker_id: str,
        metrics: Metrics | None = None,
    ) -> None:
        """``spawn`` runs a background task that the worker awaits or cancels at its end."""
        self._decide = decide
        self._keeper = keeper
        self._outcomes = outcomes
        self._sync_handlers = sync_handlers
        self._spawn = spawn
        self.worker_id = worker_id
        self._metrics = metrics

    async def run(self, running: RunningJob) -> Outcome | None:
        """Run one attempt to its Outcome (None: nothing to write here), and log how it
        ended: one INFO line when it succeeded, a WARNING with the error when it failed."""
        started = time.perf_counter()
        outcome = await self._run(running)
        if outcome is not None:
            self._log(outcome, time.perf_counter() - started)
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
        else:
            fields["error"] = outcome.error
            message = (
                "attempt failed; retrying"
                if outcome.kind is OutcomeKind.RETRY
                else ("attempt failed; job failed")
            )
            log.warning(message, extra=fields)

    async def _run(self, running: RunningJob) -> Outcome | None:
        contract, job, attempt = running.contract, running.job, running.attempt
        rejected = self._decide.rejected_input(contract, job, attempt)
        if rejected is not None:
            self._keeper.decide(attempt)
            return rejected
        call = running.call = HandlerCall(contract, job, attempt, self._sync_handlers)
        self._keeper.started(attempt, contract.timeout)
        started = time.perf_counter()
        try:
            ended = await call.wait(contract.timeout)
        except asyncio.CancelledError:
            call.cancel()  # the lease was lost, or the grace is over
            raise
        if self._metrics is not None:
            self._metrics.handler_seconds.labels(running.job_type).observe(
                time.perf_counter() - started
            )
        if not self._keeper.decide(attempt):
            # The keeper timed it out while it blocked the loop: a final attempt is already
            # failed; one with a retry left is queued again now that its handler let go.
            timed_out = self._decide.timed_out(contract, job, attempt)
            return None if timed_out.kind is OutcomeKind.FAILED else timed_out
        if ended is None:
            call.cancel()
            timed_out = self._decide.timed_out(contract, job, attempt)
            if timed_out.kind is OutcomeKind.RETRY and not call.ended.done():
                self._hold_until_stopped(call, timed_out)
                return None
            return timed_out
        if isinstance(ended, Stopped):
            return None  # cancelled by this worker: its caller decides
        return self._decide.ended(contract, job, attempt, ended)

    def _hold_until_stopped(self, call: HandlerCall, outcome: Outcome) -> None:
        """A handler past its timeout that does not stop: its retry is written only once it
        has stopped, so the job never runs twice at once. Its lease stays held meanwhile,
        and its slot is free."""
        log.warning(
            "handler past its timeout is still running; its retry waits for it",
            extra={
                "action": "timeout",
                "job_id": str(outcome.attempt.id),
                "job_type": outcome.job_type,
                "worker_id": self.worker_id,
            },
        )

        async def write_when_stopped() -> None:
            await asyncio.shield(call.ended)
            await self._outcomes.add(outcome)

        self._spawn(write_when_stopped())

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
        for r in unfinished:
            if r.task is not None:
                r.task.cancel()
        await asyncio.gather(*(r.task for r in unfinished if r.task), return_exceptions=True)
        calls = [r.call.ended for r in unfinished if r.call is not None]
        if calls:
            await asyncio.wait(calls, timeout=settle_seconds)
        stopped = []
        for r in unfinished:
            after = self.after_cancel(r)
            if after is AfterCancel.GIVE_BACK:
                stopped.append(r.attempt)
            elif isinstance(after, Outcome):
                await self._outcomes.add(after)
        return stopped

    def after_cancel(self, r: RunningJob) -> Outcome | AfterCancel:
        """An attempt cancelled at the end of the grace: given back, its outcome (its
        handler finished after all: never given back), or left to its lease."""
        if r.call is None:
            return AfterCancel.GIVE_BACK  # its handler never started
        if not r.call.ended.done():
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
        ended = r.call.ended.result()
        if isinstance(ended, Stopped):
            return AfterCancel.GIVE_BACK
        if not self._keeper.decide(r.attempt):  # timed out by the keeper meanwhile
            timed_out = self._decide.timed_out(r.contract, r.job, r.attempt)
            return AfterCancel.KEEP_LEASE if timed_out.kind is OutcomeKind.FAILED else timed_out
        return self._decide.ended(r.contract, r.job, r.attempt, ended)
