"""Calling a handler so that it cannot hurt the worker.

An async handler runs inside its attempt's task; a plain function in a daemon thread of a
bounded set (SyncHandlers). Either way every way it can end becomes a value: what it
returned, or what it raised, ``BaseException``s included (``SystemExit``,
``KeyboardInterrupt``, a ``CancelledError`` it raised itself), so nothing a handler does
stops the event loop or the worker. Only the worker's own cancellation propagates.

Past its timeout an async handler is cancelled (deadlines.py); if it swallows that and
returns late, its result is discarded (``TimedOut``), and the lease keeper has already
recorded the timeout.
A thread cannot be cancelled: the caller gets ``TimedOut`` at the timeout, with the thread's
future to wait on (runner.py decides what the late end means).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from queue_core.models import Attempt, Job

from .deadlines import Deadline
from .error_text import describe

_T = TypeVar("_T")


@dataclass(frozen=True)
class Returned:
    value: Any


@dataclass(frozen=True)
class Raised:
    error: BaseException
    description: tuple[str, str] | None = None  # error_text.describe(error), see described()


Ended = Returned | Raised


@dataclass(frozen=True)
class TimedOut:
    """The handler ran past its timeout. ``thread``: a plain function's end, still to come."""

    thread: ThreadEnd[Ended] | None = field(default=None)


async def call_async(
    handler: Callable[[Job], Awaitable[Any]],
    job: Job,
    attempt: Attempt,
    deadline: Deadline | None,
) -> Ended | TimedOut:
    """Run an async handler in the current task until ``deadline`` (None: no timeout).
    A handler that returns after its deadline (it swallowed the cancellation, or held the
    loop through it) has its result discarded: TimedOut."""
    if deadline is None:
        return await _guarded(handler, job, attempt)
    task = asyncio.current_task()
    assert task is not None
    try:
        ended = await _guarded(handler, job, attempt)
    except asyncio.CancelledError:
        deadline.close()
        if deadline.expired and task.uncancel() <= deadline.cancelling_at_start:
            return TimedOut()  # our cancellation, at the deadline
        raise
    late = deadline.passed()
    deadline.close()
    if deadline.expired:
        task.uncancel()  # it swallowed our cancellation
    return TimedOut() if late else ended


async def _guarded(handler: Callable[[Job], Awaitable[Any]], job: Job, attempt: Attempt) -> Ended:
    # The lease keeper finds this frame (by GUARDED_CODE) when the handler blocks the loop,
    # and reads ``attempt`` from it.
    try:
        value = await handler(job)
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # the worker cancelled it (its timeout, a lost lease, shutdown)
        return Raised(exc)  # the handler raised CancelledError of its own accord
    except BaseException as exc:  # SystemExit, KeyboardInterrupt...: the attempt fails
        return Raised(exc)
    return Returned(value)


GUARDED_CODE = _guarded.__code__
"""The code of the frame that runs every async handler (lease_keeper.py looks for it)."""


class ThreadEnd(asyncio.Future[_T]):
    """The end of a function run in a thread of its own (start_thread): its result, and when
    the thread began and finished (time.monotonic), set by the thread itself."""

    began: float | None = None
    finished: float | None = None


def start_thread(function: Callable[[], _T], name: str) -> ThreadEnd[_T]:
    """Run ``function()`` (which must not raise) in a new daemon thread: one that never
    returns cannot keep the process from exiting."""
    loop = asyncio.get_running_loop()
    end: ThreadEnd[_T] = ThreadEnd(loop=loop)

    def run() -> None:
        end.began = time.monotonic()
        result = function()
        end.finished = time.monotonic()
        _call_soon(loop, _settle, end, result)

    threading.Thread(target=run, name=name, daemon=True).start()
    return end


THREAD_MAX_WAITS = 10
"""A thread that has not even begun is waited for this many of its time limits at most."""


async def within(end: ThreadEnd[_T], seconds: float) -> _T | None:
    """The thread's result, or None once it has run ``seconds`` without finishing. The
    seconds count from when the thread began, not from now: a process frozen meanwhile (a
    handler holding the GIL) or a loop blocked when the thread finished does not make a
    thread late. Cancelling the caller leaves the thread alone."""
    for _ in range(THREAD_MAX_WAITS):
        began = end.began
        left = seconds if began is None else began + seconds - time.monotonic()
        if left <= 0:
            break
        try:
            async with asyncio.timeout(left):
                return await asyncio.shield(end)
        except TimeoutError:
            continue
    began, finished = end.began, end.finished
    if began is not None and finished is not None and finished - began <= seconds:
        return await asyncio.shield(end)  # it finished in time; its result is on its way
    return None


class SyncHandlers:
    """Runs plain-function handlers in daemon threads, at most ``limit`` at once (a thread
    still running past its attempt's timeout keeps its place until it returns)."""

    def __init__(self, limit: int) -> None:
        self._slots = asyncio.Semaphore(limit)

    async def start(self, handler: Callable[[Job], Any], job: Job) -> ThreadEnd[Ended]:
        """Start ``handler(job)`` in a thread once a slot is free; the future of its end."""
        await self._slots.acquire()
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()  # the current job, as an async handler sees it

        def call() -> Ended:
            try:
                return Returned(context.run(handler, job))
            except BaseException as exc:  # everything a handler raises is its outcome
                return Raised(exc)
            finally:
                _call_soon(loop, self._slots.release)

        return start_thread(call, f"hybridq-handler-{job.get('job_type')}-{job.get('id')}")


async def wait_thread(thread: ThreadEnd[Ended], timeout: float | None) -> Ended | TimedOut:
    """A handler thread's end, or TimedOut once it has run ``timeout`` seconds (it runs
    on). Cancelling the caller leaves the thread alone."""
    if timeout is None:
        return await asyncio.shield(thread)
    ended = await within(thread, timeout)
    return TimedOut(thread) if ended is None else ended


DESCRIBE_SECONDS = 1.0
"""How long describing an exception (its ``__str__``, its arguments') may take."""


async def described(raised: Raised) -> Raised:
    """``raised`` with its description (error_text.describe). An exception whose own code
    would run to describe it (a ``__str__`` of its own, arguments that are not plain values)
    is described in a thread, for at most DESCRIBE_SECONDS: such code may block, and must
    not block the worker's loop."""
    exc = raised.error
    if _plainly_printable(exc):
        return replace(raised, description=describe(exc))
    name = type(exc).__name__ if type(type(exc)) is type else "Exception"
    try:
        description = await within(
            start_thread(lambda: describe(exc), "hybridq-describe-error"), DESCRIBE_SECONDS
        )
    except asyncio.CancelledError:
        # The handler has ended: its outcome is recorded whatever the worker is doing (a
        # stopping worker must not give back a job whose handler finished).
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        description = (f"{name}: <not printed: the worker was cancelling the attempt>", "")
    if description is None:
        description = (f"{name}: <the exception could not be printed in time>", "")
    return replace(raised, description=description)


_PLAIN_ARGS = (str, int, float, bool, type(None))


def _plainly_printable(exc: BaseException) -> bool:
    """Printing it runs no code of the handler's: a built-in ``__str__``, plain args."""
    cls = type(exc)
    return (
        type(cls) is type
        and hasattr(cls.__str__, "__objclass__")  # a slot of a built-in type
        and all(type(arg) in _PLAIN_ARGS for arg in exc.args)
    )


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    """From a handler thread; the worker's loop may be gone (it stopped without waiting for
    a thread that never returned)."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        pass
