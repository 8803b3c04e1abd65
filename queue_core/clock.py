"""The worker's estimate of Postgres' clock.

Scheduled jobs are promoted in Redis by this clock and confirmed in Postgres by ``now()``;
measuring the offset once keeps the two within a round trip, so a worker whose own clock
runs ahead never pops a job that Postgres would refuse as not yet due.
"""

from __future__ import annotations

import time

from .keys import EPOCH
from .ports import JobStore

_EPOCH_UNIX_MS = int(EPOCH.timestamp() * 1000)


class ServerClock:
    def __init__(self) -> None:
        self.offset_ms = 0.0  # Postgres' clock minus ours

    async def sync(self, store: JobStore) -> None:
        before = time.time()
        server_ms = await store.server_time_ms()
        after = time.time()
        self.offset_ms = server_ms - (before + after) * 500.0

    def now_ms(self) -> int:
        """Now by Postgres' clock, in ms since keys.EPOCH (the unit of Redis scores)."""
        return int(time.time() * 1000.0 + self.offset_ms) - _EPOCH_UNIX_MS
