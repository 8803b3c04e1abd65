"""Retry policy: how long a failed attempt waits before the next one. Pure: no I/O."""

from __future__ import annotations

import random
from dataclasses import dataclass

DEFAULT_BASE_SECONDS = 1.0
"""Delay after the first failed attempt, before jitter."""
DEFAULT_CAP_SECONDS = 600.0
"""No retry waits longer than this, however many attempts failed."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with "equal jitter": half the delay is fixed, half random, so
    retries of many jobs that failed together spread out but still grow with each attempt."""

    base_seconds: float = DEFAULT_BASE_SECONDS
    cap_seconds: float = DEFAULT_CAP_SECONDS

    def delay_seconds(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before the attempt after ``attempt`` (1 = the first attempt just failed)."""
        exponent = max(attempt - 1, 0)
        ceiling = min(self.cap_seconds, self.base_seconds * (2.0 ** min(exponent, 60)))
        r = (rng or random).random()
        return ceiling / 2 + r * ceiling / 2

    def should_retry(self, attempts: int, max_retries: int) -> bool:
        """``max_retries`` counts retries after the first attempt: up to 1 + max_retries runs."""
        return attempts <= max_retries
