"""Fixtures shared by every test layer.

Integration tests run against real servers: TEST_DATABASE_URL / TEST_REDIS_URL, or the
local servers on 5432/6379, or embedded ones when nothing listens there. Each test gets its
own Postgres schema and Redis key namespace, so tests run in any order and never see each
other's jobs, and the servers are left as they were found. Tests that break servers
(tests/failure) start private ones instead; they run inside
tests/integration/test_suite_hygiene.py, which checks that, or when named on the command line.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from queue_core import Queue, Settings, connect
from queue_core.dev.devservers import servers_for
from queue_core.store.migrate import apply_migrations

REPO = Path(__file__).resolve().parent.parent
# Assertions moved out of test modules into a helper keep pytest's detailed failure output.
pytest.register_assert_rewrite("tests.support.index_state")
FAILURE_TESTS = REPO / "tests" / "failure"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Collect tests/failure only when the command line names it (or a file in it)."""
    if collection_path != FAILURE_TESTS:
        return None
    named = (Path(arg.split("::")[0]).resolve() for arg in config.args)
    return not any(path == FAILURE_TESTS or FAILURE_TESTS in path.parents for path in named)


@pytest.fixture(scope="session")
def server_urls() -> Iterator[tuple[str, str]]:
    with servers_for(
        os.environ.get("TEST_DATABASE_URL"),
        os.environ.get("TEST_REDIS_URL"),
        REPO / ".hybridq-data" / "test",
        use_default_ports=True,
    ) as urls:
        yield urls


@pytest.fixture
async def _loop_guard() -> AsyncIterator[None]:
    """Fails the test if anything in its event loop raised without being handled."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        errors.append(context)
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    yield
    loop.set_exception_handler(None)
    assert not errors, f"unhandled exceptions in the event loop: {errors}"


@pytest.fixture
async def settings(server_urls: tuple[str, str], _loop_guard: None) -> AsyncIterator[Settings]:
    """Settings for one test: its own migrated schema and Redis namespace, short timings."""
    database_url, redis_url = server_urls
    name = "t_" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(database_url)
    try:
        await apply_migrations(conn, name)
    finally:
        await conn.close()
    yield Settings(
        database_url=database_url,
        redis_url=redis_url,
        db_schema=name,
        namespace=name,
        retry_base_seconds=0.05,
        retry_cap_seconds=1.0,
        lease_seconds=5.0,
        idle_poll_seconds=0.5,
        shutdown_grace_seconds=2.0,
    )
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()
    await delete_namespace(redis_url, name)


async def delete_namespace(redis_url: str, namespace: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        for pattern in (f"{{{namespace}:*", f"{namespace}:*"):
            async for key in client.scan_iter(match=pattern, count=1000):
                await client.delete(key)
    finally:
        await client.aclose()


@pytest.fixture
async def queue(settings: Settings) -> AsyncIterator[Queue]:
    """Connected to the test's schema. Tests enqueue job types no handlers module declares
    (each registers its own handlers on a runner), so this producer opts out of validation
    explicitly; tests of validation connect with handlers= themselves."""
    async with connect(settings, validate=False) as q:
        yield q
