"""The Redis client of the index, its scripts, and the one place Redis errors become
BackendUnavailable("redis")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, AuthorizationError, RedisError, ResponseError

from queue_core.errors import BackendUnavailable, ConfigurationError

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


async def check_redis(url: str) -> None:
    """That the Redis of ``url`` answers a PING. Raises BackendUnavailable if it cannot be
    reached, ConfigurationError (naming REDIS_URL and the fix) if it refuses the password or
    the database number."""
    client = create_client(url)
    try:
        await client.ping()
    except (AuthenticationError, AuthorizationError) as exc:
        raise ConfigurationError(
            f"REDIS_URL: Redis refused the login ({exc}): fix the user or password in REDIS_URL"
        ) from exc
    except ResponseError as exc:
        raise ConfigurationError(
            f"REDIS_URL: Redis refused the connection's set-up ({exc}): check the database "
            "number (redis://host:6379/0) and the options in REDIS_URL"
        ) from exc
    except (RedisError, ConnectionError, OSError, TimeoutError) as exc:
        raise BackendUnavailable("redis", f"{type(exc).__name__}: {exc}") from exc
    finally:
        await client.aclose()
