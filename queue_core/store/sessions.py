"""PgSessionStore: the dashboard's server-side sessions (the ``dashboard_sessions`` table,
migration 0009), shared by every API replica. Implements ports.SessionStore."""

from __future__ import annotations

import asyncpg

from .connection import translate_errors
from .queries import Q


class PgSessionStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def insert_dashboard_session(
        self, id_hash: str, token_hash: str, max_seconds: float
    ) -> None:
        """A session of ``token_hash``'s holder, ending ``max_seconds`` from now at the latest."""
        async with translate_errors():
            await self.pool.execute(Q.insert_dashboard_session, id_hash, token_hash, max_seconds)

    async def touch_dashboard_session(
        self, id_hash: str, idle_seconds: float, *, activity: bool
    ) -> str | None:
        """The token hash of the live session ``id_hash`` (None: unknown, logged out, idle
        for more than ``idle_seconds`` or past its absolute expiry); ``activity`` records
        this request as the person's (it restarts the idle clock)."""
        async with translate_errors():
            value = await self.pool.fetchval(
                Q.touch_dashboard_session, id_hash, idle_seconds, activity
            )
        return str(value) if value is not None else None

    async def delete_dashboard_session(self, id_hash: str) -> None:
        async with translate_errors():
            await self.pool.execute(Q.delete_dashboard_session, id_hash)

    async def delete_ended_dashboard_sessions(self, idle_seconds: float) -> int:
        """Delete the sessions that have ended; returns how many."""
        async with translate_errors():
            status = await self.pool.execute(Q.delete_ended_dashboard_sessions, idle_seconds)
        return int(status.split()[-1])
