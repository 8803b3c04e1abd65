"""Calling a handler so that it cannot hurt the worker.

An async handler runs inside its attempt's task; a plain function in a daemon thread of a
bounded set (SyncHandlers). Either way every way it can end becomes a value: what it
returned, or what it raised, ``BaseException``s included (``SystemExit``,
``KeyboardInterrupt``, a ``CancelledError`` it raised itself), so nothing a handler does
stops the event loop or the worker. Only the worker's own cancellation propagates.

Past its timeout an async handler is cancelled; if it swallows that and returns late, its
result is discarded (``TimedOut``), and the lease keeper has already recorded the timeout.
A thread cannot be cancelled: the caller gets ``TimedOut`` at the timeout, with the thread's
future to wait on (runner.py decides what the late end means).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from queue_core.models import Attempt, Job


@dataclass(frozen=True)
class Returned:
    value: Any


@dataclass(frozen=True)
class Raised:
    error: BaseException


Ended = Returned | Raised


@dataclass(frozen=True)
class TimedOut:
    """The handler ran past its timeout. ``thread``: a plain function's end, still to come."""

    thread: asyncio.Future[Ended] | None = field(default=None)


async def call_async(
    handler: Callable[[Job], Awaitable[Any]], job: Job, attempt: Attempt, timeout: float | None
) -> Ended | TimedOut:
    """Run an async handler in the current task, for at most ``timeout`` seconds."""
    if timeout is None:
        return await _guarded(handler, job, attempt)
    try:
        async with asyncio.timeout(timeout) as deadline:
            ended = await _guarded(handler, job, attempt)
    except TimeoutError:
        return TimedOut()
    return TimedOut() if deadline.expired() else ended  # it swallowed the cancellation


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


class SyncHandlers:
    """Runs plain-function handlers in daemon threads, at most ``limit`` at once (a thread
    still running past its attempt's timeout keeps its place until it returns). Daemon
    threads: one that never returns cannot keep the process from exiting."""

    def __init__(self, limit: int) -> None:
        self._slots = asyncio.Semaphore(limit)

    async def start(self, handler: Callable[[Job], Any], job: Job) -> asyncio.Future[Ended]:
        """Start ``handler(job)`` in a thread once a slot is free; the future of its end."""
        await self._slots.acquire()
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[Ended] = loop.create_future()
        context = contextvars.copy_context()  # the current job, as an async handler sees it

        def run() -> None:
            try:
                result: Ended = Returned(context.run(handler, job))
            except BaseException as exc:  # everything a handler raises is its outcome
                result = Raised(exc)
            _call_soon(loop, self._slots.release)
            _call_soon(loop, _settle, ended, result)

        name = f"hybridq-handler-{job.get('job_type')}-{job.get('id')}"
        threading.Thread(target=run, name=name, daemon=True).start()
        return ended


async def wait_thread(thread: asyncio.Future[Ended], timeout: float | None) -> Ended | TimedOut:
    """A handler thread's end, or TimedOut after ``timeout`` seconds (it runs on). Cancelling
    the caller leaves the thread's future alone."""
    try:
        async with asyncio.timeout(timeout):
            return await asyncio.shield(thread)
    except TimeoutError:
        return TimedOut(thread)


def _settle(future: asyncio.Future[Ended], result: Ended) -> None:
    if not future.done():
        future.set_result(result)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    """From a handler thread; the worker's loop may be gone (it stopped without waiting for
    a thread that never returned)."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        pass
