"""ServerClock carries Postgres' clock forward on a monotonic clock: a step of the host's
wall clock moves nothing, and a stale or doubted reading is taken again."""

from __future__ import annotations

from queue_core.clock import RESYNC_SECONDS, ServerClock
from queue_core.models import EPOCH

SERVER_MS = EPOCH.timestamp() * 1000 + 5_000_000.0  # Postgres' clock at the reading


class Clocks:
    def __init__(self) -> None:
        self.monotonic = 100.0
        self.wall = 1_700_000_000.0


class Store:
    async def server_time_ms(self) -> float:
        return SERVER_MS


async def test_a_wall_clock_step_does_not_move_the_estimate() -> None:
    clocks = Clocks()
    clock = ServerClock(lambda: clocks.monotonic, lambda: clocks.wall)
    await clock.sync(Store())
    assert clock.now_ms() == 5_000_000
    clocks.wall += 3600  # the host's clock jumps an hour ahead
    clocks.monotonic += 1.5
    assert clock.now_ms() == 5_001_500
    clocks.wall -= 7200  # and two hours back
    assert clock.now_ms() == 5_001_500


async def test_a_reading_goes_stale_and_can_be_invalidated() -> None:
    clocks = Clocks()
    clock = ServerClock(lambda: clocks.monotonic, lambda: clocks.wall)
    assert clock.stale  # never read
    await clock.sync(Store())
    assert not clock.stale
    clocks.monotonic += RESYNC_SECONDS + 0.1
    assert clock.stale
    await clock.sync(Store())
    clock.invalidate()
    assert clock.stale
