"""ClaimedAhead: when a worker may claim ahead, and which waiting jobs go back."""

from __future__ import annotations

import time
import uuid

from queue_core.ports import Attempt
from queue_core.prefetch import ClaimedAhead


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


def test_waiting_jobs_come_out_in_claim_order() -> None:
    ahead = ClaimedAhead(limit=5, max_job_seconds=0.02, max_wait_seconds=1.0)
    attempts = [attempt() for _ in range(3)]
    for a in attempts:
        ahead.push({"id": str(a.id)}, a)
    assert len(ahead) == 3
    popped = [ahead.pop() for _ in range(3)]
    assert [w.attempt for w in popped if w is not None] == attempts
    assert ahead.pop() is None


def test_jobs_that_waited_too_long_are_taken_back_oldest_first() -> None:
    ahead = ClaimedAhead(limit=5, max_job_seconds=0.02, max_wait_seconds=0.05)
    old = attempt()
    ahead.push({}, old)
    time.sleep(0.06)
    fresh = attempt()
    ahead.push({}, fresh)
    assert ahead.take_stale() == [old]
    assert len(ahead) == 1
    wait = ahead.seconds_until_stale()
    assert wait is not None and 0 < wait <= 0.05
    assert ahead.take_all() == [fresh]
    assert ahead.seconds_until_stale() is None


def test_discard_forgets_one_job() -> None:
    ahead = ClaimedAhead(limit=5, max_job_seconds=0.02, max_wait_seconds=1.0)
    a, b = attempt(), attempt()
    ahead.push({}, a)
    ahead.push({}, b)
    ahead.discard(a.id)
    assert ahead.take_all() == [b]
