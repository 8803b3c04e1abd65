"""Failure tests break the machine's servers on purpose (restart, stop, FLUSHALL, terminate
connections). These fixtures make sure both servers answer before each test starts and
again before its fixtures tear down (a failed test included), and skip the layer when the
servers are not the local ones the chaos helpers control."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlparse

import pytest

from queue_core import Queue
from tests.support.servers import PG_HOST, PG_PORT, REDIS_HOST, REDIS_PORT, ensure_servers_up


@pytest.fixture(scope="session", autouse=True)
def _servers_up_at_start() -> Iterator[None]:
    ensure_servers_up()
    yield
    ensure_servers_up()


@pytest.fixture(autouse=True)
async def _servers_up_after(server_urls: tuple[str, str], queue: Queue) -> AsyncIterator[None]:
    """Set up after ``queue`` so it is torn down before it: the servers are back before the
    pool closes and the test's schema is dropped."""
    database_url, redis_url = server_urls
    pg, rd = urlparse(database_url), urlparse(redis_url)
    if (pg.hostname, pg.port) != (PG_HOST, PG_PORT) or (rd.hostname, rd.port) != (
        REDIS_HOST,
        REDIS_PORT,
    ):
        pytest.skip("failure tests control the local servers on 5432 and 6379 only")
    try:
        yield
    finally:
        await asyncio.to_thread(ensure_servers_up)
