"""JobsMonitor: the failure tests' own view of the jobs table, on a connection of its own that
survives the chaos (a failed read returns None and reconnects next time)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import asyncpg

from queue_core import Settings

STALL_SECONDS = 30.0
"""A drain whose job counts do not move for this long is stuck: rescues take a lease (2 s)
plus a backoff (at most 1 s with the test settings), so a live drain never pauses that long."""

MONITOR_APPLICATION_NAME = "hybridq-chaos-monitor"
"""The test's own observer connection; never matched by the backend-termination chaos, which
targets application_name 'hybridq' (every pool hybridq opens)."""


class JobsMonitor:
    """Reads the jobs table on its own connection and survives the chaos: a failed read
    (server restarting, connection terminated) returns None and reconnects next time."""

    def __init__(self, settings: Settings) -> None:
        self._url = settings.database_url
        self._schema = settings.db_schema
        self._conn: asyncpg.Connection | None = None

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            server_settings = {"application_name": MONITOR_APPLICATION_NAME}
            if self._schema:
                server_settings["search_path"] = self._schema
            self._conn = await asyncpg.connect(
                self._url, timeout=5, server_settings=server_settings
            )
        return self._conn

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record] | None:
        try:
            conn = await self._connection()
            return await asyncio.wait_for(conn.fetch(query, *args), 10)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
            await self._drop()
            return None

    async def fetch_retrying(self, query: str, *args: Any, timeout: float = 60) -> list[Any]:
        deadline = time.monotonic() + timeout
        while (rows := await self.fetch(query, *args)) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"postgres unreadable for {timeout}s")
            await asyncio.sleep(0.2)
        return rows

    async def status_counts(self) -> Counter[str] | None:
        rows = await self.fetch("SELECT status, count(*) AS n FROM jobs GROUP BY status")
        return None if rows is None else Counter({r["status"]: r["n"] for r in rows})

    async def wait_for_succeeded(
        self, at_least: int, timeout: float = 120, stall_seconds: float = STALL_SECONDS
    ) -> bool:
        """Until at least ``at_least`` jobs succeeded: the moment to inject the next fault.
        False when the drain is stuck or too slow: inject nothing more, go to the verdict."""
        deadline = time.monotonic() + timeout
        last: Counter[str] | None = None
        moved = time.monotonic()
        while time.monotonic() < deadline:
            counts = await self.status_counts()
            if counts is not None:
                if counts["succeeded"] >= at_least:
                    return True
                if counts != last:
                    last, moved = counts, time.monotonic()
            if time.monotonic() - moved > stall_seconds:
                return False
            await asyncio.sleep(0.05)
        return False

    async def wait_for_running(self, job_id: str, timeout: float) -> None:
        """Until the job is running (its handler has started, give or take a claim)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = await self.fetch("SELECT status FROM jobs WHERE id = $1::uuid", job_id)
            if rows and rows[0]["status"] == "running":
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"job {job_id} not running within {timeout}s")

    async def wait_settled(self, timeout: float, stall_seconds: float = STALL_SECONDS) -> bool:
        """Until no job is queued or running. False on timeout, or as soon as the counts
        have not moved for ``stall_seconds`` (stuck: no point waiting for the timeout); the
        verdict then says why."""
        deadline = time.monotonic() + timeout
        last: Counter[str] | None = None
        moved = time.monotonic()
        while time.monotonic() < deadline:
            counts = await self.status_counts()
            if counts is not None:
                if counts["queued"] + counts["running"] == 0:
                    return True
                if counts != last:
                    last, moved = counts, time.monotonic()
            if time.monotonic() - moved > stall_seconds:
                return False
            await asyncio.sleep(0.2)
        return False

    async def _drop(self) -> None:
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None

    async def close(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            try:
                await asyncio.wait_for(self._conn.close(), 5)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
                self._conn.terminate()
        self._conn = None
