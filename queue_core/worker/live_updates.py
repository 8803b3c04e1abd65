"""LiveUpdates: what a worker does with its handlers' ``progress()`` and ``emit()`` (live.py).

Neither costs a handler a round trip. Progress is published to live readers at once and kept
as the latest value per attempt; a background task writes every attempt's latest progress
to Postgres in one fenced statement at most every PROGRESS_WRITE_SECONDS (so a reader who
comes late, or after Redis was lost, still sees it), and an attempt's last value is written
before its outcome. Emitted events go straight to the EventPublisher's batches. Calls from a
plain-function handler (a thread) are handed to the worker's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

from queue_core.errors import BackendUnavailable
from queue_core.live import PROGRESS_MESSAGE_MAX_CHARS
from queue_core.models import Attempt, Job, JobEvent, Progress
from queue_core.ports import EventSink, OutcomeStore

from .error_text import safe_text

log = logging.getLogger(__name__)

PROGRESS_WRITE_SECONDS = 0.5
"""Postgres gets a running job's latest progress at most this often."""


class LiveUpdates:
    """Implements live.LiveSink for one worker."""

    def __init__(self, store: OutcomeStore, events: EventSink) -> None:
        self._store = store
        self._events = events
        self._latest: dict[Attempt, Progress] = {}  # reported, not yet written
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0

    async def run(self) -> None:
        """Write reported progress to Postgres every PROGRESS_WRITE_SECONDS; runs until
        cancelled."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        while True:
            await asyncio.sleep(PROGRESS_WRITE_SECONDS)
            await self._write(list(self._latest))

    async def finish(self, attempt: Attempt) -> None:
        """Its handler has ended: write its last progress before its outcome."""
        if attempt in self._latest:
            await self._write([attempt])

    def progress(self, attempt: Attempt, job: Job, fraction: float, message: str) -> None:
        if not self._on_loop():
            self._hand_to_loop(self.progress, attempt, job, fraction, message)
            return
        message = safe_text(message, PROGRESS_MESSAGE_MAX_CHARS)
        self._latest[attempt] = Progress(attempt, fraction, message)
        self._events.publish(
            [
                JobEvent(
                    str(attempt.id),
                    job["job_type"],
                    job.get("user_id"),
                    kind="progress",
                    progress=fraction,
                    message=message,
                )
            ]
        )

    def emit(self, attempt: Attempt, job: Job, data_json: str) -> None:
        if not self._on_loop():
            self._hand_to_loop(self.emit, attempt, job, data_json)
            return
        self._events.append(job["job_type"], str(attempt.id), data_json)

    async def _write(self, attempts: list[Attempt]) -> None:
        updates = [self._latest.pop(a) for a in attempts if a in self._latest]
        if not updates:
            return
        try:
            await self._store.write_progress(updates)
        except BackendUnavailable as exc:  # the next report, or the next write, tries again
            log.warning(
                "progress not written", extra={"action": "write_progress", "error": str(exc)}
            )
        except Exception:  # a bug here must not end progress for every later job
            log.exception("writing progress failed", extra={"action": "write_progress"})

    def _on_loop(self) -> bool:
        return self._loop is None or threading.get_ident() == self._thread

    def _hand_to_loop(self, method: object, *args: object) -> None:
        assert self._loop is not None and callable(method)
        with contextlib.suppress(RuntimeError):  # the worker's loop is gone
            self._loop.call_soon_threadsafe(method, *args)
