"""IndexWriter: background index writes, coalesced while one is in flight, in order."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from queue_core.enqueue.index_writer import IndexWriter
from queue_core.errors import BackendUnavailable
from queue_core.models import IndexEntry


def entry() -> IndexEntry:
    return IndexEntry(uuid.uuid4(), "t", 0, datetime.now(UTC), deferred=False)


class GatedIndex:
    """add_jobs waits for ``gate`` and records each call's entries."""

    def __init__(self) -> None:
        self.calls: list[list[IndexEntry]] = []
        self.gate = asyncio.Event()
        self.fail = False

    async def add_jobs(self, entries: list[IndexEntry]) -> None:
        self.calls.append(list(entries))
        await self.gate.wait()
        if self.fail:
            raise BackendUnavailable("redis", "down")


async def test_entries_submitted_during_a_write_go_together_in_the_next() -> None:
    index = GatedIndex()
    writer = IndexWriter(index)  # type: ignore[arg-type]
    first, second, third = entry(), entry(), entry()
    writer.submit([first])
    await asyncio.sleep(0)  # the write of `first` is now in flight
    writer.submit([second])
    writer.submit([third])
    assert index.calls == [[first]]
    index.gate.set()
    await writer.flush()
    assert index.calls == [[first], [second, third]]


async def test_a_failed_write_is_logged_and_later_submits_still_go_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    index = GatedIndex()
    index.fail = True
    index.gate.set()
    writer = IndexWriter(index)  # type: ignore[arg-type]
    writer.submit([entry()])
    await writer.flush()
    assert "reconciler will repair it" in caplog.text
    index.fail = False
    later = entry()
    writer.submit([later])
    await writer.flush()
    assert index.calls[-1] == [later]


async def test_close_gives_up_after_its_timeout(caplog: pytest.LogCaptureFixture) -> None:
    index = GatedIndex()  # never opens
    writer = IndexWriter(index)  # type: ignore[arg-type]
    writer.submit([entry()])
    await writer.close(0.05)
    assert "reconciler will index them" in caplog.text


async def test_flush_waits_for_the_write_in_flight() -> None:
    index = GatedIndex()
    writer = IndexWriter(index)  # type: ignore[arg-type]
    first = entry()
    writer.submit([first])
    await asyncio.sleep(0)
    flushing = asyncio.create_task(writer.flush())
    later = entry()
    writer.submit([later])  # queued behind the write in flight
    await asyncio.sleep(0.01)
    assert not flushing.done()
    index.gate.set()
    await asyncio.wait_for(flushing, 1)
    assert index.calls[0] == [first]
