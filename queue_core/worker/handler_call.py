"""HandlerCall: one attempt's handler, running where it cannot hurt the worker.

An async handler runs in a task of its own, a plain function in a daemon thread of a
bounded set (SyncHandlers). Either way every way it can end becomes a value in
``HandlerCall.ended``: what it returned, or what it raised, ``BaseException``s included
(``SystemExit``, ``KeyboardInterrupt``, a ``CancelledError`` it raised itself), so nothing a
handler does stops the event loop or the worker. ``Stopped`` means it obeyed ``cancel()``.

The worker waits for ``ended`` with the attempt's timeout and does not wait longer: a handler
that swallows cancellation, or a thread that cannot be cancelled, goes on running, but its
attempt is decided at the timeout (runner.py decides what becomes of its late result).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from queue_core.contracts import JobContract
from queue_core.models import Attempt, Job


@dataclass(frozen=True)
class Returned:
    value: Any


@dataclass(frozen=True)
class Raised:
    error: BaseException


@dataclass(frozen=True)
class Stopped:
    """The handler stopped because the worker cancelled it."""


Ended = Returned | Raised | Stopped


class SyncHandlers:
    """Runs plain-function handlers in daemon threads, at most ``limit`` at once (a thread
    still running past its attempt's timeout keeps its place until it returns). Daemon
    threads: one that never returns cannot keep the process from exiting."""

    def __init__(self, limit: int) -> None:
        self._slots = asyncio.Semaphore(limit)

    async def start(
        self, handler: Callable[[Job], Any], job: Job, ended: asyncio.Future[Ended]
    ) -> None:
        """Start ``handler(job)`` in a thread once a slot is free; ``ended`` gets its end."""
        await self._slots.acquire()
        loop = asyncio.get_running_loop()
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


class HandlerCall:
    def __init__(
        self, contract: JobContract, job: Job, attempt: Attempt, sync_handlers: SyncHandlers
    ) -> None:
        """Start the handler of ``contract`` on ``job`` now (a sync one once a thread slot
        is free)."""
        self.ended: asyncio.Future[Ended] = asyncio.get_running_loop().create_future()
        if contract.is_async:
            self._task: asyncio.Future[Any] = asyncio.ensure_future(
                _guarded(contract.handler, job, attempt)
            )
            self._task.add_done_callback(self._task_done)
        else:
            self._task = asyncio.ensure_future(
                sync_handlers.start(contract.handler, job, self.ended)
            )
            # cancelled while waiting for a thread slot: it never started, it stopped
            self._task.add_done_callback(
                lambda task: _settle(self.ended, Stopped()) if task.cancelled() else None
            )

    async def wait(self, timeout: float | None) -> Ended | None:
        """How the handler ended, or None when ``timeout`` seconds passed first (it goes
        on). Cancelling the caller does not cancel the handler: call cancel()."""
        done, _ = await asyncio.wait({self.ended}, timeout=timeout)
        return self.ended.result() if done else None

    def cancel(self) -> None:
        """Ask the handler to stop. An async handler gets a CancelledError at its next
        await (it may swallow it); a thread cannot be stopped and runs to its end."""
        if not self._task.done():
            self._task.cancel()

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        _settle(self.ended, Stopped() if task.cancelled() else task.result())


async def _guarded(handler: Callable[[Job], Awaitable[Any]], job: Job, attempt: Attempt) -> Ended:
    # Found on the stack by the lease keeper when this handler blocks the loop.
    __hybridq_attempt__ = attempt  # noqa: F841
    try:
        value = await handler(job)
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # the worker cancelled it
        return Raised(exc)  # the handler raised CancelledError of its own accord
    except BaseException as exc:  # SystemExit, KeyboardInterrupt...: the attempt fails
        return Raised(exc)
    return Returned(value)


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
