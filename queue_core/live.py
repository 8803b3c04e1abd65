"""Reporting from inside a handler, for the job it is running: ``progress()`` and ``emit()``.

    from queue_core import progress, emit

    async def handle_briefing_generation(job: dict) -> dict:
        await progress(0.1, "fetching the news")
        for token in write_briefing():
            await emit({"token": token})
        ...

Neither waits for Postgres or Redis: each hands its value to the worker, which writes the
latest progress to the job's row (at most a few times a second) and appends emitted events to
the job's event stream in batches (worker/live_updates.py). Readers see them through
``JobService.wait()`` and the API's Server-Sent Events. Both work the same from a plain
function handler (running in a thread): there the ``await`` may be left out. Outside a
handler run by a worker they raise NoCurrentJob. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import InvalidJob, NoCurrentJob
from .json_values import JsonValueError, encode_json
from .models import Attempt, Job

PROGRESS_MESSAGE_MAX_CHARS = 500
EMIT_MAX_BYTES = 65_536
"""One emitted event, as JSON, at most (an LLM token is a few bytes; a page is not an event)."""


class LiveSink(Protocol):
    """Where a worker takes what its handlers report. Called from the handler's task or its
    thread: an implementation must be safe from both."""

    def progress(self, attempt: Attempt, job: Job, fraction: float, message: str) -> None: ...
    def emit(self, attempt: Attempt, job: Job, data_json: str) -> None: ...


@dataclass(frozen=True)
class CurrentJob:
    attempt: Attempt
    job: Job
    sink: LiveSink


_current: ContextVar[CurrentJob | None] = ContextVar("hybridq_current_job", default=None)


def bind(attempt: Attempt, job: Job, sink: LiveSink) -> Token[CurrentJob | None]:
    """Make ``job`` the current job of this context (the worker does, around a handler)."""
    return _current.set(CurrentJob(attempt, job, sink))


def unbind(token: Token[CurrentJob | None]) -> None:
    _current.reset(token)


class _Done:
    """An awaitable that is already done: the work happened at the call."""

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # makes this a generator: ``await`` finishes at once


def progress(fraction: float, message: str = "") -> _Done:
    """Report how far the current job is: ``fraction`` from 0 to 1 and a short ``message``
    (at most 500 characters). Raises NoCurrentJob outside a handler, InvalidJob for a
    fraction outside 0..1 or a message that is not a string."""
    current = _need_current("progress")
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise InvalidJob(f"progress fraction must be a number, got {type(fraction).__name__}")
    if not (math.isfinite(fraction) and 0.0 <= fraction <= 1.0):
        raise InvalidJob(f"progress fraction must be between 0 and 1, got {fraction!r}")
    if not isinstance(message, str):
        raise InvalidJob(f"progress message must be a string, got {type(message).__name__}")
    current.sink.progress(current.attempt, current.job, float(fraction), message)
    return _Done()


def emit(data: dict[str, Any]) -> _Done:
    """Append ``data`` (a JSON object, at most 64 KiB as JSON) to the current job's event
    stream, e.g. one token of a generated answer. Raises NoCurrentJob outside a handler,
    InvalidJob for data that is not a storable JSON object or too large."""
    current = _need_current("emit")
    if not isinstance(data, dict):
        raise InvalidJob(f"emit takes a JSON object (a dict), got {type(data).__name__}")
    try:
        text = encode_json(data, "emitted event")
    except JsonValueError as exc:
        raise InvalidJob(str(exc)) from None
    if len(text) > EMIT_MAX_BYTES:
        raise InvalidJob(f"an emitted event is {len(text)} bytes as JSON, over {EMIT_MAX_BYTES}")
    current.sink.emit(current.attempt, current.job, text)
    return _Done()


def _need_current(what: str) -> CurrentJob:
    current = _current.get()
    if current is None:
        raise NoCurrentJob(
            f"{what}() reports for the job a worker is running: call it from a handler"
        )
    return current
