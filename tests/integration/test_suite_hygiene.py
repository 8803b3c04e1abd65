"""The suite never harms the servers it is pointed at: the failure tests (which restart,
crash, stop and flush servers) run here against the configured PostgreSQL and Redis, and
afterwards those are the same processes, holding the same table and key planted before."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(1800)
async def test_failure_tests_leave_the_configured_servers_as_they_found_them(
    server_urls: tuple[str, str],
) -> None:
    database_url, redis_url = server_urls
    tag = uuid.uuid4().hex[:12]
    schema, key, value = f"hygiene_{tag}", f"hybridq-hygiene:{tag}", f"canary-{tag}"
    conn = await asyncpg.connect(database_url)
    client = aioredis.Redis.from_url(redis_url)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"; CREATE TABLE "{schema}".canary (v text)')
        await conn.execute(f'INSERT INTO "{schema}".canary VALUES ($1)', value)
        pg_started = await conn.fetchval("SELECT pg_postmaster_start_time()")
        await client.set(key, value)
        redis_run_id = (await client.info("server"))["run_id"]

        env = {**os.environ, "TEST_DATABASE_URL": database_url, "TEST_REDIS_URL": redis_url}
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-s", "tests/failure"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=1700,
        )
        print(run.stdout[-6000:])  # the chaos reports; shown with -s or on failure
        assert run.returncode == 0, f"the failure tests failed:\n{run.stdout[-4000:]}"

        conn = await _reconnected(conn, database_url)
        assert await conn.fetchval("SELECT pg_postmaster_start_time()") == pg_started
        assert await conn.fetchval(f'SELECT v FROM "{schema}".canary') == value
        assert (await client.info("server"))["run_id"] == redis_run_id
        assert await client.get(key) == value.encode()
    finally:
        await client.delete(key)
        await client.aclose()
        conn = await _reconnected(conn, database_url)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


async def _reconnected(conn: asyncpg.Connection, database_url: str) -> asyncpg.Connection:
    """The same connection if it survived (it must: nobody may restart this server), else a
    new one, so the verdict can still be read and the canary removed."""
    if not conn.is_closed():
        return conn
    return await asyncpg.connect(database_url)
