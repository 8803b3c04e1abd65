"""Failure tests break servers on purpose (restart, crash, stop, FLUSHALL, terminated
connections), so they run against a PostgreSQL and a Redis of their own, started for the
session on free ports (tests/support/servers.py), never against the configured ones.
``server_urls`` is overridden here: every fixture built on it (settings, queue) uses the
private servers. After each test both are brought back up, a failed test included."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from queue_core import Queue
from tests.support.servers import PrivateServers


@pytest.fixture(scope="session")
def private_servers() -> Iterator[PrivateServers]:
    servers = PrivateServers()
    try:
        servers.start()
        yield servers
    finally:
        servers.remove()


@pytest.fixture(scope="session")
def server_urls(private_servers: PrivateServers) -> tuple[str, str]:
    return private_servers.pg.url, private_servers.redis.url


@pytest.fixture(autouse=True)
async def _servers_up_after(
    private_servers: PrivateServers, queue: Queue
) -> AsyncIterator[None]:
    """Set up after ``queue`` so it is torn down before it: the servers are back before the
    pool closes and the test's schema is dropped."""
    try:
        yield
    finally:
        await asyncio.to_thread(private_servers.ensure_up)
