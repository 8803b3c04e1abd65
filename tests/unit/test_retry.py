"""RetryPolicy (queue_core.retry): equal-jitter exponential backoff and the retry budget."""

from __future__ import annotations

import random

import pytest

from queue_core.retry import DEFAULT_BASE_SECONDS, DEFAULT_CAP_SECONDS, RetryPolicy


class FixedRandom(random.Random):
    """A Random whose random() always returns ``value``: pins the jitter."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


def ceiling(policy: RetryPolicy, attempt: int) -> float:
    """The full (un-jittered) delay: base * 2^(attempt-1), at most the cap."""
    return min(policy.cap_seconds, policy.base_seconds * 2 ** (attempt - 1))


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 8, 10, 11, 20])
def test_delay_lies_between_half_the_ceiling_and_the_ceiling(attempt: int) -> None:
    policy = RetryPolicy(base_seconds=1.0, cap_seconds=600.0)
    rng = random.Random(attempt)
    delays = [policy.delay_seconds(attempt, rng) for _ in range(2000)]

    top = ceiling(policy, attempt)
    assert min(delays) >= top / 2
    assert max(delays) <= top
    # Jitter really spreads: the samples cover most of the allowed band.
    assert max(delays) - min(delays) > 0.9 * top / 2


def test_jitter_extremes_are_half_the_ceiling_and_the_ceiling() -> None:
    policy = RetryPolicy(base_seconds=2.0, cap_seconds=600.0)
    assert policy.delay_seconds(3, FixedRandom(0.0)) == 4.0
    assert policy.delay_seconds(3, FixedRandom(1.0)) == 8.0


def test_ceiling_doubles_with_each_failed_attempt() -> None:
    policy = RetryPolicy(base_seconds=0.5, cap_seconds=10_000.0)
    lows = [policy.delay_seconds(attempt, FixedRandom(0.0)) for attempt in range(1, 11)]

    assert lows[0] == 0.25
    assert [b / a for a, b in zip(lows, lows[1:], strict=False)] == [2.0] * 9


@pytest.mark.parametrize("attempt", [11, 12, 50, 10_000])
def test_delay_is_capped_however_many_attempts_failed(attempt: int) -> None:
    policy = RetryPolicy(base_seconds=1.0, cap_seconds=600.0)
    assert policy.delay_seconds(attempt, FixedRandom(0.0)) == 300.0
    assert policy.delay_seconds(attempt, FixedRandom(1.0)) == 600.0


def test_attempt_zero_waits_like_the_first_attempt() -> None:
    policy = RetryPolicy(base_seconds=3.0)
    assert policy.delay_seconds(0, FixedRandom(0.0)) == policy.delay_seconds(1, FixedRandom(0.0))


def test_default_policy_uses_documented_defaults_and_global_random() -> None:
    policy = RetryPolicy()
    assert (policy.base_seconds, policy.cap_seconds) == (DEFAULT_BASE_SECONDS, DEFAULT_CAP_SECONDS)
    for _ in range(200):
        assert DEFAULT_BASE_SECONDS / 2 <= policy.delay_seconds(1) <= DEFAULT_BASE_SECONDS


@pytest.mark.parametrize("attempts", [1, 2, 5])
def test_no_retry_when_max_retries_is_zero(attempts: int) -> None:
    assert RetryPolicy().should_retry(attempts, 0) is False


@pytest.mark.parametrize(
    ("attempts", "expected"), [(1, True), (2, True), (3, True), (4, False), (5, False)]
)
def test_three_max_retries_allow_four_runs_in_total(attempts: int, expected: bool) -> None:
    assert RetryPolicy().should_retry(attempts, 3) is expected
