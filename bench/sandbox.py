"""The sandbox a benchmark runs in: the configured servers, and one fresh Postgres schema
plus Redis namespace per scenario, migrated before and removed after (also when the
scenario fails).

DATABASE_URL / REDIS_URL as for hybridq itself (defaults: the local servers).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import redis.asyncio as aioredis
import redis.exceptions

from queue_core import BackendUnavailable, Queue, Settings, connect
from queue_core.settings import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL
from queue_core.store.migrate import apply_migrations

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Servers:
    database_url: str
    redis_url: str

    @classmethod
    def from_env(cls) -> Servers:
        return cls(
            os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL),
            os.environ.get("REDIS_URL", DEFAULT_REDIS_URL),
        )

    def harness_env(self) -> dict[str, str]:
        """BENCH_* variables that point the peer harness at the same servers (only the ones
        not already set)."""
        pg, rd = urlsplit(self.database_url), urlsplit(self.redis_url)
        wanted = {
            "BENCH_PG_HOST": pg.hostname or "127.0.0.1",
            "BENCH_PG_PORT": str(pg.port or 5432),
            "BENCH_REDIS_HOST": rd.hostname or "127.0.0.1",
            "BENCH_REDIS_PORT": str(rd.port or 6379),
        }
        if pg.username:
            wanted["BENCH_PG_USER"] = pg.username
        return {k: v for k, v in wanted.items() if k not in os.environ}


def sandbox_name(prefix: str = "hqbench") -> str:
    """A schema name that is also a valid namespace: [a-z0-9_], unique per call."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def create_schema(database_url: str, schema: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await apply_migrations(conn, schema)
    finally:
        await conn.close()


async def drop_schema(database_url: str, schema: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def delete_namespace(redis_url: str, namespace: str) -> int:
    """Delete every key of the namespace (index sets, epoch and rebuild keys, limits)."""
    client = aioredis.Redis.from_url(redis_url)
    deleted = 0
    try:
        for pattern in (f"{{{namespace}:*", f"{namespace}:*"):
            batch: list[Any] = []
            async for key in client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += await client.unlink(*batch)
                    batch.clear()
            if batch:
                deleted += await client.unlink(*batch)
    finally:
        await client.aclose()
    return deleted


def scenario_settings(servers: Servers, name: str, **overrides: Any) -> Settings:
    return Settings(
        database_url=servers.database_url,
        redis_url=servers.redis_url,
        db_schema=name,
        namespace=name,
        **overrides,
    )


@asynccontextmanager
async def sandbox_queue(servers: Servers, **overrides: Any) -> AsyncIterator[Queue]:
    """A connected Queue on a fresh migrated schema and an empty namespace; both are removed
    on the way out."""
    name = sandbox_name()
    await create_schema(servers.database_url, name)
    try:
        settings = scenario_settings(servers, name, **overrides)
        async with connect(settings, handlers="bench.noop_handlers") as queue:
            yield queue
    finally:
        await remove_sandbox(servers, name)


async def remove_sandbox(servers: Servers, name: str, patience: float = 60.0) -> None:
    """Drop the schema and the namespace's keys, waiting out a server restart (the machine is
    shared with test suites that restart them); says what is left if it cannot."""
    deadline = time.monotonic() + patience
    while True:
        try:
            await drop_schema(servers.database_url, name)
            await delete_namespace(servers.redis_url, name)
            return
        except OUTAGES as exc:
            if time.monotonic() > deadline:
                print(f"  warning: could not remove schema/namespace {name}: {exc!r}", flush=True)
                return
            await asyncio.sleep(2.0)


OUTAGES: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,  # e.g. "the database system is shutting down"
    asyncpg.InterfaceError,
    # what asyncpg raises when a backend is terminated mid-operation (a test suite's
    # pg_terminate_backend or restart): "cannot switch to state N; another operation ..."
    asyncpg.InternalClientError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    BackendUnavailable,
)
"""What a restart or outage of PostgreSQL or Redis looks like from here."""


async def wait_for_servers(servers: Servers, patience: float = 90.0) -> bool:
    """Until both servers answer (True), or ``patience`` seconds pass (False)."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        try:
            conn = await asyncpg.connect(servers.database_url, timeout=5)
            await conn.fetchval("SELECT 1")
            await conn.close()
            client = aioredis.Redis.from_url(servers.redis_url, socket_connect_timeout=5)
            try:
                await client.ping()
            finally:
                await client.aclose()
            return True
        except OUTAGES:
            await asyncio.sleep(1.0)
    return False


def worker_env(settings: Settings, events_path: Path | None = None) -> dict[str, str]:
    """Environment of a ``python -m queue_core worker`` on the scenario's schema/namespace."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        HYBRIDQ_DB_SCHEMA=settings.db_schema or "",
        HYBRIDQ_NAMESPACE=settings.namespace,
        PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])]),
        PYTHONUNBUFFERED="1",
    )
    if events_path is not None:
        env["BENCH_EVENTS"] = str(events_path)
    return env
