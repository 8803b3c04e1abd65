"""ClaimedAhead: when a worker may claim ahead, and which waiting jobs go back. Time is a
fake clock the tests advance: nothing sleeps."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from queue_core.models import Attempt
from queue_core.worker.prefetch import ClaimedAhead, Waiting, waiting


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def attempt() -> Attempt:
    return Attempt(uuid.uuid4(), 1, "w/1")


def ahead_with(clock: FakeClock, *, limit: int = 20, max_wait: float = 1.0) -> ClaimedAhead:
    return ClaimedAhead(limit=limit, max_job_seconds=0.02, max_wait_seconds=max_wait, clock=clock)


def run_for(ahead: ClaimedAhead, clock: FakeClock, seconds: float) -> None:
    job_id = uuid.uuid4()
    ahead.started(job_id)
    clock.advance(seconds)
    ahead.finished(job_id)


def test_claims_ahead_only_while_recent_jobs_are_short() -> None:
    clock = FakeClock()
    ahead = ahead_with(clock)
    assert ahead.allowance() == 20  # nothing measured yet: jobs presumed short
    for _ in range(3):
        run_for(ahead, clock, 0.001)
    assert ahead.allowance() == 20
    run_for(ahead, clock, 0.15)  # one long job is enough to stop claiming ahead
    assert ahead.allowance() == 0
    for _ in range(40):
        run_for(ahead, clock, 0.001)
    assert ahead.allowance() == 20  # short again: the average forgets the long one


def test_a_job_running_long_stops_claiming_ahead_before_it_ends() -> None:
    clock = FakeClock()
    ahead = ahead_with(clock)
    long_job = uuid.uuid4()
    ahead.started(long_job)
    clock.advance(0.019)
    assert ahead.allowance() == 20
    clock.advance(0.011)
    assert ahead.allowance() == 0  # its duration is not averaged in yet, but it counts
    ahead.finished(long_job)
    assert ahead.average_job_seconds == pytest.approx(0.2 * 0.03)  # one 30 ms job, from 0
    assert ahead.allowance() == 20


def claimed(clock: FakeClock, priority: int = 0, due: datetime | None = None) -> Waiting:
    a = attempt()
    job = {"id": str(a.id), "priority": priority, "scheduled_for": due or datetime.now(UTC)}
    return waiting(job, a, clock())


def test_waiting_jobs_start_best_first_even_when_claimed_later() -> None:
    clock = FakeClock()
    ahead = ahead_with(clock, limit=5)
    t = datetime.now(UTC)
    first_claim = [claimed(clock, 0, t), claimed(clock, 0, t)]  # uuid4s: order explicitly
    first_claim.sort()
    late_but_urgent = claimed(clock, 5, t + timedelta(seconds=1))
    for w in [*first_claim, late_but_urgent]:
        ahead.push(w)
    assert len(ahead) == 3
    assert [ahead.pop() for _ in range(3)] == [late_but_urgent, *first_claim]
    assert ahead.pop() is None


def test_jobs_that_waited_too_long_are_taken_back() -> None:
    clock = FakeClock()
    ahead = ahead_with(clock, limit=5, max_wait=0.05)
    old = claimed(clock, priority=-1)
    ahead.push(old)
    clock.advance(0.06)
    fresh = claimed(clock, priority=-5)
    ahead.push(fresh)
    assert ahead.seconds_until_stale() == 0
    assert ahead.take_stale() == [old]
    assert len(ahead) == 1
    assert ahead.seconds_until_stale() == pytest.approx(0.05)
    clock.advance(0.02)
    assert ahead.seconds_until_stale() == pytest.approx(0.03)
    assert ahead.take_all() == [fresh]
    assert ahead.seconds_until_stale() is None


def test_discard_forgets_one_job() -> None:
    clock = FakeClock()
    ahead = ahead_with(clock, limit=5)
    a, b = claimed(clock, 1), claimed(clock, 2)
    ahead.push(a)
    ahead.push(b)
    ahead.discard(b.attempt.id)
    assert ahead.take_all() == [a]
