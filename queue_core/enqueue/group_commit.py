"""Group commit for create(): concurrent callers share one INSERT and one commit.

A caller arriving while no insert is in flight is written at once, alone: no added latency.
Callers arriving while one is in flight wait for it, then go together in the next insert
(up to ``max_batch``). Each caller still returns only after its own row is committed, so
a returned create() is as durable as before; under load there are simply fewer fsyncs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from queue_core.errors import BackendUnavailable
from queue_core.models import Job, NewJob

MAX_BATCH = 500
"""Rows per shared INSERT at most."""

InsertMany = Callable[[list[NewJob]], Awaitable[list[Job]]]


class GroupCommit:
    def __init__(self, insert_many: InsertMany, max_batch: int = MAX_BATCH) -> None:
        self._insert_many = insert_many
        self._max_batch = max_batch
        self._pending: list[tuple[NewJob, asyncio.Future[Job]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._inline = False  # a caller is writing its own row (see _insert_alone)

    async def insert(self, job: NewJob) -> Job:
        if not self._busy():
            return await self._insert_alone(job)
        # A write is in flight: when it ends, its writer (or inline caller) takes these.
        future: asyncio.Future[Job] = asyncio.get_running_loop().create_future()
        self._pending.append((job, future))
        return await future

    def _busy(self) -> bool:
        return self._inline or (self._writer is not None and not self._writer.done())

    async def _insert_alone(self, job: NewJob) -> Job:
        """Nothing in flight: the caller writes its own row (no task, no future to set up),
        and whoever arrived meanwhile goes next, together."""
        self._inline = True
        try:
            [row] = await self._insert_many([job])
            return row
        finally:
            self._inline = False
            if self._pending:
                self._writer = asyncio.create_task(self._write_pending())

    async def _write_pending(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: len(batch)]
            await self._write(batch)

    async def _write(self, batch: list[tuple[NewJob, asyncio.Future[Job]]]) -> None:
        try:
            jobs = await self._insert_many([job for job, _ in batch])
        except BackendUnavailable as exc:  # nothing was written: every caller hears it
            for _, future in batch:
                _settle(future, exc)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
            else:
                # One bad row fails the whole statement: write each alone so that only its
                # own caller gets the error.
                for item in batch:
                    await self._write([item])
        else:
            for (_, future), job in zip(batch, jobs, strict=True):
                if not future.done():
                    future.set_result(job)


def _settle(future: asyncio.Future[Job], exc: Exception) -> None:
    if not future.done():
        future.set_exception(exc)
