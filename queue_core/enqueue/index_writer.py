"""IndexWriter: puts freshly committed jobs into the Redis index in the background.

create() returns as soon as Postgres has committed the job: that commit is the
acknowledgement, and the index is only an accelerator. Awaiting the Redis write as well cost
one more round trip per call (a third of a one-at-a-time create()). Here the jobs committed
while a write is in flight go together in the next one, in commit order.

What this gives up is small and bounded: if the process dies in the millisecond between the
commit and the write, or Redis is down, the job waits for the reconciler's next pass (as it
always did when the Redis write failed). Nothing is lost: the row is queued in Postgres.
"""

from __future__ import annotations

import asyncio
import logging

from queue_core.errors import BackendUnavailable
from queue_core.models import IndexEntry
from queue_core.ports import ReadyIndex

log = logging.getLogger(__name__)


class IndexWriter:
    def __init__(self, index: ReadyIndex) -> None:
        self._index = index
        self._pending: list[IndexEntry] = []
        self._writer: asyncio.Task[None] | None = None
        self._submitted = 0  # entries submitted so far
        self._settled = 0  # of those, entries written or given up on
        self._progressed = asyncio.Event()  # set after each write

    def submit(self, entries: list[IndexEntry]) -> None:
        """Queue entries for the index; returns at once."""
        self._pending.extend(entries)
        self._submitted += len(entries)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending())

    async def flush(self) -> None:
        """Wait until every entry submitted before this call was written (or its write
        failed); entries submitted meanwhile do not hold it up."""
        target = self._submitted
        while self._settled < target and self._writer is not None and not self._writer.done():
            self._progressed.clear()
            progressed = asyncio.ensure_future(self._progressed.wait())
            try:
                await asyncio.wait({self._writer, progressed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                progressed.cancel()

    async def close(self, timeout: float) -> None:
        """Flush, giving up after ``timeout`` seconds: the reconciler indexes the rest."""
        try:
            await asyncio.wait_for(self.flush(), timeout)
        except TimeoutError:
            log.warning(
                "jobs not indexed before close; the reconciler will index them",
                extra={"action": "add_jobs", "jobs": self._submitted - self._settled},
            )
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            await asyncio.wait({self._writer})

    async def _write_pending(self) -> None:
        while self._pending:
            entries, self._pending = self._pending, []
            try:
                await self._index.add_jobs(entries)
            except BackendUnavailable as exc:
                log.warning(
                    "redis index not updated; the reconciler will repair it",
                    extra={"action": "add_jobs", "jobs": len(entries), "error": str(exc)},
                )
            except Exception:  # a bug must not leave the writer dead for later submits
                log.exception("indexing jobs failed", extra={"action": "add_jobs"})
            self._settled += len(entries)
            self._progressed.set()
