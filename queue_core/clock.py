"""The worker's estimate of Postgres' clock.

Scheduled jobs are promoted in Redis by this clock and confirmed in Postgres by ``now()``;
measuring the offset once keeps the two within a round trip, so a worker whose own clock
runs ahead never pops a job that Postgres would refuse as not yet due.
"""

from __future__ import annotations

import time
from typing import Protocol

from .models import EPOCH

_EPOCH_UNIX_MS = int(EPOCH.timestamp() * 1000)


class ServerTime(Protocol):
    """Postgres' clock, in ms since the Unix epoch (every store has it)."""

    async def server_time_ms(self) -> float: ...


class ServerClock:
    def __init__(self) -> None:
        self.offset_ms = 0.0  # Postgres' clock minus ours

    async def sync(self, store: ServerTime) -> None:
        before = time.time()
        server_ms = await store.server_time_ms()
        after = time.time()
        self.offset_ms = server_ms - (before + after) * 500.0

    def now_ms(self) -> int:
        """Now by Postgres' clock, in ms since models.EPOCH (the unit of Redis scores)."""
        return int(time.time() * 1000.0 + self.offset_ms) - _EPOCH_UNIX_MS
