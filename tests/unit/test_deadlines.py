"""Async handlers' timeouts (worker/deadlines.py with handler_call.call_async): a deadline
cancels, a late return is discarded, and a stall is paid for by the handler that caused it,
not by its neighbours. The stalls here are real (``time.sleep`` on the loop), with wide
margins: what is checked is which attempt times out, never how fast anything is."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from queue_core.models import Attempt
from queue_core.worker.deadlines import Deadlines
from queue_core.worker.handler_call import (
    Raised,
    Returned,
    TimedOut,
    call_async,
    described,
)

TICK = 0.05


def attempt() -> Attempt:
    return Attempt(uuid.uuid4(), 1, "w/1")


class Beat:
    """The worker's beat: ticks the deadlines every TICK seconds."""

    def __init__(self, culprit: Attempt | None) -> None:
        self.extended: list[tuple[Attempt, float]] = []
        self.deadlines = Deadlines(
            TICK,
            culprit=lambda since: culprit,
            on_extend=lambda a, s: self.extended.append((a, s)),
        )

    async def run(self) -> None:
        while True:
            self.deadlines.tick(time.monotonic())
            await asyncio.sleep(TICK)


async def run_with(deadlines: Deadlines, who: Attempt, seconds: float, handler: Any) -> Any:
    async def job(_: Any) -> Any:
        return await handler()

    return await call_async(job, {}, who, deadlines.start(who, seconds))


async def test_a_handler_past_its_deadline_is_cancelled_and_the_task_left_clean() -> None:
    beat = Beat(None)
    ticking = asyncio.create_task(beat.run())

    async def sleeps() -> dict[str, Any]:
        await asyncio.sleep(10)
        return {}

    ended = await run_with(beat.deadlines, attempt(), 0.2, sleeps)
    ticking.cancel()
    assert isinstance(ended, TimedOut)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_a_late_return_is_discarded_whether_it_swallowed_or_blocked() -> None:
    beat = Beat(None)

    async def swallows() -> dict[str, Any]:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.3)
        return {"late": True}

    async def blocks() -> dict[str, Any]:
        time.sleep(0.4)  # never yields: its cancellation is never delivered
        return {"late": True}

    assert isinstance(await run_with(beat.deadlines, attempt(), 0.1, swallows), TimedOut)
    assert isinstance(await run_with(beat.deadlines, attempt(), 0.1, blocks), TimedOut)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_in_time_is_in_time() -> None:
    beat = Beat(None)

    async def quick() -> dict[str, Any]:
        await asyncio.sleep(0.01)
        return {"ok": True}

    ended = await run_with(beat.deadlines, attempt(), 5, quick)
    assert ended == Returned({"ok": True})


async def _neighbour_beside_a_stall(culprit_known: bool) -> tuple[Any, Any, Beat]:
    """``polite`` (0.6 s deadline) awaits 0.3 s; meanwhile ``hog`` (0.5 s deadline) blocks
    the loop for 1 s. Returns how each ended."""
    hog = attempt()
    beat = Beat(hog if culprit_known else None)
    ticking = asyncio.create_task(beat.run())
    await asyncio.sleep(2 * TICK)

    async def polite() -> dict[str, Any]:
        await asyncio.sleep(0.3)
        await asyncio.sleep(0.05)
        return {"polite": True}

    async def hogs() -> dict[str, Any]:
        await asyncio.sleep(0.05)
        time.sleep(1.0)
        return {"hog": True}

    ended = await asyncio.gather(
        run_with(beat.deadlines, attempt(), 0.6, polite),
        run_with(beat.deadlines, hog, 0.5, hogs),
    )
    ticking.cancel()
    return ended[0], ended[1], beat


async def test_a_stall_is_paid_back_to_the_neighbours_not_to_its_culprit() -> None:
    polite, hog, beat = await _neighbour_beside_a_stall(culprit_known=True)
    assert polite == Returned({"polite": True}), "the neighbour was timed out for the hog's stall"
    assert isinstance(hog, TimedOut), "the hog itself is not paid back"
    assert len(beat.extended) == 1 and beat.extended[0][1] > 0.5, beat.extended


async def test_with_no_culprit_seen_nobody_is_paid_back() -> None:
    polite, hog, beat = await _neighbour_beside_a_stall(culprit_known=False)
    assert isinstance(polite, TimedOut) and isinstance(hog, TimedOut)
    assert beat.extended == []


class SlowToPrint(Exception):
    def __str__(self) -> str:
        time.sleep(3)
        return "late"


class PrintsAnArgument(Exception):
    pass


async def test_describing_an_exception_never_blocks_the_loop() -> None:
    ticks = 0

    async def count() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.05)

    counting = asyncio.create_task(count())
    slow = await described(Raised(SlowToPrint()))
    counting.cancel()
    assert slow.description is not None
    assert slow.description[0] == "SlowToPrint: <the exception could not be printed in time>"
    assert ticks >= 5, "the loop went on while the exception was being printed"

    plain = await described(Raised(ValueError("bad", 3)))
    assert plain.description is not None and plain.description[0] == "ValueError: ('bad', 3)"

    class Shouty:
        def __str__(self) -> str:
            return "AN ARGUMENT"

    custom = await described(Raised(PrintsAnArgument(Shouty())))
    assert custom.description is not None
    assert custom.description[0] == "PrintsAnArgument: AN ARGUMENT"
