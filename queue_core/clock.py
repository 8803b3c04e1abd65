"""ServerClock: a process's estimate of Postgres' clock.

Scheduled jobs are promoted in Redis by this clock and confirmed in Postgres by ``now()``.
Postgres' clock is read once and carried forward on this process's monotonic clock, which a
step of the host's wall clock (an NTP correction, a VM resumed, an operator's ``date -s``)
does not move: a job due in 1 s starts in 1 s whatever the host's clock does. The reading is
refreshed every RESYNC_SECONDS, and at once when Postgres disagrees (``invalidate``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from .models import EPOCH

RESYNC_SECONDS = 60.0
"""How long a reading of Postgres' clock is trusted before it is read again."""
_EPOCH_UNIX_MS = EPOCH.timestamp() * 1000


class ServerTime(Protocol):
    """Postgres' clock, in ms since the Unix epoch (every store has it)."""

    async def server_time_ms(self) -> float: ...


class ServerClock:
    def __init__(
        self,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """``monotonic`` carries a reading forward; ``wall`` (seconds since the Unix epoch)
        stands in only until the first sync."""
        self._monotonic = monotonic
        self._wall = wall
        self._server_ms: float | None = None  # Postgres' clock at the last reading
        self._read_at = 0.0  # our monotonic clock then

    async def sync(self, store: ServerTime) -> None:
        """Read Postgres' clock; the reading is placed half-way through the round trip."""
        before = self._monotonic()
        server_ms = await store.server_time_ms()
        after = self._monotonic()
        self._server_ms, self._read_at = server_ms, (before + after) / 2

    @property
    def stale(self) -> bool:
        return self._server_ms is None or self._monotonic() - self._read_at > RESYNC_SECONDS

    def invalidate(self) -> None:
        """Postgres disagreed with this clock (it refused a job as not due): read it again
        before the next use."""
        self._read_at = -RESYNC_SECONDS - 1.0

    def now_ms(self) -> int:
        """Now by Postgres' clock, in ms since models.EPOCH (the unit of Redis scores)."""
        if self._server_ms is None:
            return int(self._wall() * 1000.0 - _EPOCH_UNIX_MS)
        elapsed_ms = (self._monotonic() - self._read_at) * 1000.0
        return int(self._server_ms + elapsed_ms - _EPOCH_UNIX_MS)
