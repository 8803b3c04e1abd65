"""OutcomeBuffer: records attempt outcomes in batches, one statement per kind per flush.

Outcomes wait at most ``flush_interval`` (or until ``batch_max`` are pending) and are then
written with complete_jobs / retry_jobs / fail_jobs. Every write is fenced; an outcome that
matches no row belongs to an attempt whose lease was lost, and is discarded and logged.

One outcome's data can never hold up the others: when Postgres refuses a batch for what is
in it (a data error; never a lost connection), its rows are written one at a time, and one
that is still refused fails its job with an error saying so. While Postgres is unreachable
the batch stays pending and is retried with backoff: a result is written, or its lease is
lost, never silently dropped. Producers wait (back-pressure) while ``4 * batch_max`` are
pending.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

from queue_core.errors import BackendUnavailable
from queue_core.models import Completion, Failure, RetryLater
from queue_core.ports import EventSink, OutcomeStore, ReadyIndex
from queue_core.telemetry.metrics import Metrics

from .executor import Outcome, OutcomeKind

log = logging.getLogger(__name__)

_BACKOFF_MAX_SECONDS = 2.0
UNSTORABLE_ERROR = "OutcomeNotStored: Postgres refused this attempt's outcome"
"""The error of a job whose outcome Postgres refused even alone (plain ASCII: it is stored)."""


class OutcomeBuffer:
    def __init__(
        self,
        store: OutcomeStore,
        index: ReadyIndex,
        owner: str,
        *,
        flush_interval: float,
        batch_max: int,
        on_written: Callable[[list[Outcome]], None],
        events: EventSink | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """``events``: told of each status written (after its commit), for live readers."""
        self._store = store
        self._index = index
        self._events = events
        self._owner = owner
        self._interval = flush_interval
        self._batch_max = batch_max
        self._on_written = on_written  # called with every outcome resolved (written or lost)
        self._metrics = metrics
        self._pending: list[Outcome] = []
        self._has_items = asyncio.Event()
        self._full = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()

    def __len__(self) -> int:
        return len(self._pending)

    def pending_records(self) -> tuple[list[Completion], list[RetryLater], list[Failure]]:
        """The outcomes not written yet, as store records (read by the lease keeper's thread
        when the loop is stuck at shutdown: a copy of the list, taken at once)."""
        pending = list(self._pending)
        return (
            [_completion(o) for o in pending if o.kind is OutcomeKind.SUCCEEDED],
            [_retry(o) for o in pending if o.kind is OutcomeKind.RETRY],
            [_failure(o) for o in pending if o.kind is OutcomeKind.FAILED],
        )

    async def add(self, outcome: Outcome) -> None:
        while len(self._pending) >= 4 * self._batch_max:
            self._drained.clear()
            await self._drained.wait()
        self._pending.append(outcome)
        self._has_items.set()
        if len(self._pending) >= self._batch_max:
            self._full.set()

    async def run(self) -> None:
        """Flush loop; runs until cancelled. Cancel it only after a final ``flush()``."""
        while True:
            await self._has_items.wait()
            try:
                await asyncio.wait_for(self._full.wait(), self._interval)
            except TimeoutError:
                pass
            try:
                await self.flush()
            except Exception:  # results must keep flowing: log, wait, write them again
                log.exception(
                    "writing outcomes failed unexpectedly; retrying",
                    extra={"action": "flush_outcomes", "pending": len(self._pending)},
                )
                await asyncio.sleep(1.0)

    async def flush(self) -> None:
        """Write everything pending, retrying while Postgres is unreachable. Each kind is
        resolved as soon as its statement succeeds, so a retry never rewrites it."""
        delay = 0.05
        while self._pending:
            batch = self._pending[: self._batch_max]
            try:
                for kind in OutcomeKind:
                    group = [o for o in batch if o.kind is kind]
                    if group:
                        self._resolve(group, await self._write_isolated(kind, group))
            except BackendUnavailable as exc:
                log.warning(
                    "outcomes not written yet; retrying",
                    extra={
                        "action": "flush_outcomes",
                        "pending": len(self._pending),
                        "error": str(exc),
                    },
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX_SECONDS)
        self._has_items.clear()
        self._full.clear()
        self._drained.set()

    async def _write_isolated(self, kind: OutcomeKind, group: list[Outcome]) -> set[uuid.UUID]:
        """One statement for the group; if Postgres refuses what is in it, one per row, and a
        row still refused fails its job instead. BackendUnavailable propagates (retry)."""
        try:
            return await self._write(kind, group)
        except BackendUnavailable:
            raise
        except Exception as exc:
            if len(group) > 1:
                log.warning(
                    "a batch of outcomes was refused; writing them one at a time",
                    extra={"action": "flush_outcomes", "jobs": len(group), "error": str(exc)},
                )
                written: set[uuid.UUID] = set()
                for outcome in group:
                    written |= await self._write_isolated(kind, [outcome])
                return written
            return await self._write_unstorable(group[0], exc)

    async def _write_unstorable(self, outcome: Outcome, exc: Exception) -> set[uuid.UUID]:
        log.error(
            "an outcome was refused by postgres; its job fails",
            extra={
                "action": "flush_outcomes",
                "job_id": str(outcome.attempt.id),
                "job_type": outcome.job_type,
                "attempt": outcome.attempt.attempt,
                "outcome": outcome.kind.value,
                "error": repr(exc)[:500],
            },
        )
        failure = Failure(outcome.attempt, UNSTORABLE_ERROR, f"{type(exc).__name__}"[:200])
        return await self._store.fail_jobs([failure])

    async def _write(self, kind: OutcomeKind, group: list[Outcome]) -> set[uuid.UUID]:
        """One fenced statement for the group; returns the ids it wrote."""
        if kind is OutcomeKind.SUCCEEDED:
            return await self._store.complete_jobs([_completion(o) for o in group])
        if kind is OutcomeKind.FAILED:
            return await self._store.fail_jobs([_failure(o) for o in group])
        entries = await self._store.retry_jobs([_retry(o) for o in group])
        try:
            await self._index.add_jobs(entries)
        except BackendUnavailable as exc:
            log.warning(
                "retried jobs not indexed; the reconciler will",
                extra={"action": "retry_jobs", "error": str(exc)},
            )
        return {e.id for e in entries}

    def _count(self, group: list[Outcome], written: set[uuid.UUID]) -> None:
        assert self._metrics is not None
        counters = {
            OutcomeKind.SUCCEEDED: self._metrics.succeeded,
            OutcomeKind.RETRY: self._metrics.retried,
            OutcomeKind.FAILED: self._metrics.failed,
        }
        for o in group:
            counter = counters[o.kind] if o.attempt.id in written else self._metrics.leases_lost
            counter.labels(o.job_type).inc()

    def _resolve(self, group: list[Outcome], written: set[uuid.UUID]) -> None:
        if self._events is not None:
            self._events.publish([o.event() for o in group if o.attempt.id in written])
        done = {id(o) for o in group}
        self._pending = [o for o in self._pending if id(o) not in done]
        if self._metrics is not None:
            self._count(group, written)
        for o in group:
            if o.attempt.id not in written:
                log.warning(
                    "lease lost: outcome discarded",
                    extra={
                        "action": "lease_lost",
                        "job_id": str(o.attempt.id),
                        "attempt": o.attempt.attempt,
                        "worker_id": self._owner,
                        "outcome": o.kind.value,
                    },
                )
        self._on_written(group)


def _completion(o: Outcome) -> Completion:
    return Completion(o.attempt, o.output_json)


def _retry(o: Outcome) -> RetryLater:
    return RetryLater(o.attempt, o.error or "", o.delay_seconds, o.detail)


def _failure(o: Outcome) -> Failure:
    return Failure(o.attempt, o.error or "", o.detail)
