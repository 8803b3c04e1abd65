"""Claiming ahead: a worker may hold a few claimed jobs that wait for a free slot.

Without it a worker with short jobs spends most of its time waiting: it claims as many jobs
as it has free slots, runs them in well under a millisecond, and only then starts the next
claim's two round trips (Redis pop, Postgres UPDATE). Holding up to ``limit`` more claimed
jobs lets the next claim overlap the current jobs.

The risk is the one Celery's prefetch is known for: a claimed job stuck behind long jobs
while another worker idles. So a worker claims ahead only while its jobs are short: their
moving average is under ``max_job_seconds`` and no running job has run longer than that.
A job that still waited here longer than ``max_wait_seconds`` is handed back to the queue
(runner.py releases it).

Claimed-ahead jobs are leased like running ones (the heartbeat renews them), so nothing
here weakens a guarantee: a worker that dies holding them leaves leases the reconciler
rescues, exactly as for running jobs.
"""

from __future__ import annotations

import heapq
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from queue_core.models import Attempt, Job

Clock = Callable[[], float]
"""Seconds on a monotonic clock (time.monotonic; tests pass a fake they advance)."""

AVERAGE_WEIGHT = 0.2
"""Weight of the newest job's duration in the moving average."""


@dataclass(frozen=True, order=True)
class Waiting:
    """A claimed job waiting for a slot. Ordered as the Redis index orders jobs (priority
    desc, due time, creation), so that a better job claimed later still starts first."""

    rank: tuple[int, datetime, uuid.UUID]
    job: Job = field(compare=False)
    attempt: Attempt = field(compare=False)
    since: float = field(compare=False)  # the clock's reading when it was claimed


def waiting(job: Job, attempt: Attempt, since: float) -> Waiting:
    rank = (-int(job["priority"]), job["scheduled_for"], attempt.id)
    return Waiting(rank, job, attempt, since)


class ClaimedAhead:
    def __init__(
        self,
        limit: int,
        max_job_seconds: float,
        max_wait_seconds: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self.clock = clock
        self.limit = limit
        self.max_job_seconds = max_job_seconds
        self.max_wait_seconds = max_wait_seconds
        self.average_job_seconds = 0.0
        self._waiting: list[Waiting] = []  # a heap: the best job first
        self._started: dict[uuid.UUID, float] = {}  # running jobs, oldest first

    def __len__(self) -> int:
        return len(self._waiting)

    def allowance(self) -> int:
        """How many jobs may wait here now: ``limit`` while jobs are short, else none."""
        if self.average_job_seconds >= self.max_job_seconds:
            return 0
        oldest = next(iter(self._started.values()), None)
        if oldest is not None and self.clock() - oldest >= self.max_job_seconds:
            return 0
        return self.limit

    def started(self, job_id: uuid.UUID) -> None:
        self._started[job_id] = self.clock()

    def finished(self, job_id: uuid.UUID) -> None:
        """The job's handler returned: its duration joins the moving average."""
        began = self._started.pop(job_id, None)
        if began is not None:
            seconds = self.clock() - began
            self.average_job_seconds += AVERAGE_WEIGHT * (seconds - self.average_job_seconds)

    def push(self, entry: Waiting) -> None:
        heapq.heappush(self._waiting, entry)

    def pop(self) -> Waiting | None:
        """The best waiting job, or None."""
        return heapq.heappop(self._waiting) if self._waiting else None

    def discard(self, job_id: uuid.UUID) -> None:
        """Forget a waiting job (its lease was lost, e.g. it was cancelled)."""
        self._keep(lambda w: w.attempt.id != job_id)

    def take_stale(self) -> list[Waiting]:
        """Remove and return the jobs that waited longer than max_wait_seconds."""
        cutoff = self.clock() - self.max_wait_seconds
        stale = [w for w in self._waiting if w.since < cutoff]
        if stale:
            self._keep(lambda w: w.since >= cutoff)
        return stale

    def take_all(self) -> list[Waiting]:
        taken, self._waiting = self._waiting, []
        return taken

    def seconds_until_stale(self) -> float | None:
        if not self._waiting:
            return None
        oldest = min(w.since for w in self._waiting)  # a few dozen at most
        return max(0.0, oldest + self.max_wait_seconds - self.clock())

    def _keep(self, wanted: Callable[[Waiting], bool]) -> None:
        self._waiting = [w for w in self._waiting if wanted(w)]
        heapq.heapify(self._waiting)
