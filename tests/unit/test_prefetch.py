"""ClaimedAhead: when a worker may claim ahead, and which waiting jobs go back."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

from queue_core.ports import Attempt
from queue_core.worker.prefetch import ClaimedAhead, Waiting, waiting


def attempt() -> Attempt:
    return Attempt(uuid.uuid4(), 1, "w/1")


def run_for(ahead: ClaimedAhead, seconds: float) -> None:
    job_id = uuid.uuid4()
    ahead.started(job_id)
    time.sleep(seconds)
    ahead.finished(job_id)


def test_claims_ahead_only_while_recent_jobs_are_short() -> None:
    ahead = ClaimedAhead(limit=20, max_job_seconds=0.02, max_wait_seconds=1.0)
    assert ahead.allowance() == 20  # nothing measured yet: jobs presumed short
    for _ in range(3):
        run_for(ahead, 0)
    assert ahead.allowance() == 20
    run_for(ahead, 0.15)  # one long job is enough to stop claiming ahead
    assert ahead.allowance() == 0
    for _ in range(40):
        run_for(ahead, 0)
    assert ahead.allowance() == 20  # short again: the average forgets the long one


def test_a_job_running_long_stops_claiming_ahead_before_it_ends() -> None:
    ahead = ClaimedAhead(limit=20, max_job_seconds=0.02, max_wait_seconds=1.0)
    long_job = uuid.uuid4()
    ahead.started(long_job)
    assert ahead.allowance() == 20
    time.sleep(0.03)
    assert ahead.allowance() == 0  # its duration is not averaged in yet, but it counts
    ahead.finished(long_job)
    assert 0 < ahead.average_job_seconds < 0.02  # one 30 ms job in an average of short ones
    assert ahead.allowance() == 20


def claimed(priority: int = 0, due: datetime | None = None) -> Waiting:
    a = attempt()
    job = {"id": str(a.id), "priority": priority, "scheduled_for": due or datetime.now(UTC)}
    return waiting(job, a)


def test_waiting_jobs_start_best_first_even_when_claimed_later() -> None:
    ahead = ClaimedAhead(limit=5, max_job_seconds=0.02, max_wait_seconds=1.0)
    t = datetime.now(UTC)
    first_claim = [claimed(0, t), claimed(0, t)]  # uuid4s: order the ids explicitly
    first_claim.sort()
    late_but_urgent = claimed(5, t + timedelta(seconds=1))
    for w in [*first_claim, late_but_urgent]:
        ahead.push(w)
    assert len(ahead) == 3
    assert [ahead.pop() for _ in range(3)] == [late_but_urgent, *first_claim]
    assert ahead.pop() is None


def test_jobs_that_waited_too_long_are_taken_back() -> None:
    ahead = ClaimedAhead(limit=5, max_job_seconds=0.02, max_wait_seconds=0.05)
    old = claimed(priority=-1)
    ahead.push(old)
    time.sleep(0.06)
    fresh = claimed(priority=-5)
    ahead.push(fresh)
    assert ahead.seconds_until_stale() == 0
    assert ahead.take_stale() == [old]
    assert len(ahead) == 1
    wait = ahead.seconds_until_stale()
    assert wait is not None and 0 < wait <= 0.05
    assert ahead.take_all() == [fresh]
    assert ahead.seconds_until_stale() is None


def test_discard_forgets_one_job() -> None:
    ahead = ClaimedAhead(limit=5, max_job_seconds=0.02, max_wait_seconds=1.0)
    a, b = claimed(1), claimed(2)
    ahead.push(a)
    ahead.push(b)
    ahead.discard(b.attempt.id)
    assert ahead.take_all() == [a]
