"""Async handlers' timeouts, fair to the handlers that share an event loop.

A handler that blocks the loop (``time.sleep`` in an ``async def``) stops every other
handler on it too. With plain ``asyncio.timeout`` the others' timeouts would run on
meanwhile, and once the loop was free again they would be cancelled for time they never had:
a neighbour's job would fail with ``TimeoutError`` for another handler's fault. Here a stall
is paid for by the handler that caused it: when the loop runs again, every other attempt's
deadline moves back by the length of the stall. The culprit is the attempt the lease keeper
saw on the stack while the loop was stalled; when it saw none (the whole interpreter was
frozen, or the host stalled the process) nobody is given time back.

Whatever runs first after a stall settles it, the worker's beat or an expiring deadline, so
no deadline fires before the stall is accounted for. A handler that returns after its
deadline has its result discarded, even if its cancellation could not be delivered (it held
the loop, or the GIL, through the deadline).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from queue_core.models import Attempt

STALL_MIN_SECONDS = 0.5
"""Shorter pauses of the loop are ordinary scheduling; only longer ones are paid back."""


class Deadlines:
    """The running attempts' deadlines on one worker's loop (all times: ``time.monotonic``,
    not the loop's clock, which uvloop reads once per iteration: stale after a stall)."""

    def __init__(
        self,
        tick_seconds: float,
        *,
        culprit: Callable[[float], Attempt | None],
        on_extend: Callable[[Attempt, float], None],
    ) -> None:
        """``culprit(since)``: the attempt that held the loop in a stall that began at
        ``since`` (the last tick), if known; ``on_extend(attempt, seconds)``: told of every
        deadline moved back (the lease keeper keeps its own copy)."""
        self._tick_seconds = tick_seconds
        self._culprit = culprit
        self._on_extend = on_extend
        self._live: set[Deadline] = set()
        self._last_tick: float | None = None

    def tick(self, now: float) -> None:
        """The worker's beat (every ``tick_seconds``): settles a stall just ended."""
        self.settle(now, beat=True)

    def settle(self, now: float, *, beat: bool = False) -> None:
        """Pay back a stall that ended just before ``now``, if there was one and nobody has
        yet: move back every deadline but the culprit's."""
        last = self._last_tick
        stalled = 0.0 if last is None else now - last - self._tick_seconds
        if beat or stalled >= STALL_MIN_SECONDS:
            self._last_tick = now
        if last is None or stalled < STALL_MIN_SECONDS:
            return
        culprit = self._culprit(last)
        if culprit is None:
            return
        for deadline in list(self._live):
            if deadline.attempt != culprit:
                deadline.extend(stalled)
                self._on_extend(deadline.attempt, stalled)

    def start(self, attempt: Attempt, seconds: float) -> Deadline:
        """A deadline ``seconds`` from now for the current task: it is cancelled then
        (``Deadline.expired`` tells it apart from other cancellations). close() it."""
        deadline = Deadline(self, attempt, seconds)
        self._live.add(deadline)
        return deadline

    def _closed(self, deadline: Deadline) -> None:
        self._live.discard(deadline)


class Deadline:
    def __init__(self, owner: Deadlines, attempt: Attempt, seconds: float) -> None:
        self._owner = owner
        self.attempt = attempt
        self._loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None, "a deadline belongs to a task"
        self._task = task
        self.cancelling_at_start = task.cancelling()
        self.when = time.monotonic() + seconds
        self.expired = False
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(seconds, self._fire)

    def extend(self, seconds: float) -> None:
        self.when += seconds  # an armed timer that fires early re-arms itself (_fire)

    def passed(self) -> bool:
        """Past the deadline (a stall that has just ended is settled first)."""
        now = time.monotonic()
        self._owner.settle(now)
        return self.expired or now >= self.when

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._owner._closed(self)

    def _fire(self) -> None:
        self._handle = None
        now = time.monotonic()
        self._owner.settle(now)
        if now < self.when:  # moved back meanwhile
            self._handle = self._loop.call_later(self.when - now, self._fire)
            return
        self.expired = True
        self._task.cancel()
