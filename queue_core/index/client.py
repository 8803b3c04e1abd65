"""The Redis client of the index, its scripts, and the one place Redis errors become
BackendUnavailable("redis")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from queue_core.errors import BackendUnavailable

RedisClient = aioredis.Redis
"""The client type, for code above the index that holds one without speaking redis."""

REDIS_TIMEOUT_SECONDS = 3.0
"""Longest wait for one Redis reply before the call fails as BackendUnavailable."""


def lua_script(name: str) -> str:
    """The text of ``lua/<name>.lua``; each file's header gives its KEYS, ARGV and reply."""
    return resources.files("queue_core.index").joinpath(f"lua/{name}.lua").read_text("utf-8")


@asynccontextmanager
async def translate_errors() -> AsyncIterator[None]:
    try:
        yield
    except (RedisError, ConnectionError, OSError, TimeoutError) as exc:
        raise BackendUnavailable("redis", f"{type(exc).__name__}: {exc}") from exc


def create_client(url: str) -> aioredis.Redis:
    # Members are raw 16-byte ids: replies must stay bytes.
    return aioredis.Redis.from_url(
        url,
        decode_responses=False,
        socket_connect_timeout=2.0,
        # A Redis that accepts connections but never answers must cost seconds, not hang
        # an enqueue or a claim forever.
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        health_check_interval=10,
    )
