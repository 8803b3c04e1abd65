"""Connections to Postgres: the pool every store method uses, and the one place driver
errors become QueueErrors (an unreachable server is BackendUnavailable("postgres"), a
constraint violation is InvalidJob or DuplicateJob)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from queue_core.errors import BackendUnavailable, ConfigurationError, DuplicateJob, InvalidJob
from queue_core.json_values import JSON_MAX_DEPTH, scan_json_text
from queue_core.models import UNDECODABLE

Pool = asyncpg.Pool
"""The pool type, for code above the store that holds one without speaking asyncpg."""

CONNECTION_ERRORS = (
    asyncpg.PostgresConnectionError,
    # asyncpg raises this when a pooled connection the server just terminated is reused
    # (MagicStack/asyncpg#1069): the connection is broken, not the statement.
    asyncpg.InternalClientError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.ConnectionFailureError,
    ConnectionError,
    OSError,
    TimeoutError,
)

DEFAULT_ACQUIRE_TIMEOUT_SECONDS = 10.0
"""How long a statement waits for a pooled connection before it fails (HYBRIDQ_POOL_*)."""

RETRYABLE_ERRORS = (
    *CONNECTION_ERRORS,
    asyncpg.TransactionRollbackError,  # SQLSTATE class 40: deadlock, serialization failure
)


@asynccontextmanager
async def translate_errors() -> AsyncIterator[None]:
    try:
        yield
    except UnicodeEncodeError as exc:  # a lone surrogate in a text argument: never sent
        raise InvalidJob(f"rejected before sending: {exc.reason} in a text value") from exc
    except asyncpg.UniqueViolationError as exc:
        raise DuplicateJob(str(exc)) from exc
    except (asyncpg.CheckViolationError, asyncpg.NotNullViolationError) as exc:
        raise InvalidJob(f"rejected by the jobs table: {exc}") from exc
    except asyncpg.DataError as exc:
        raise InvalidJob(f"rejected by PostgreSQL: {exc}") from exc
    except asyncpg.UndefinedTableError as exc:
        raise ConfigurationError(
            f"{exc} in the schema HYBRIDQ_DB_SCHEMA names (default: the search_path): run "
            "`hybridq migrate`, or set HYBRIDQ_DB_SCHEMA to the schema you migrated"
        ) from exc
    except asyncpg.InvalidCatalogNameError as exc:
        raise ConfigurationError(
            f"DATABASE_URL: {exc}: create that database, or fix its name in DATABASE_URL"
        ) from exc
    except (asyncpg.InvalidAuthorizationSpecificationError, asyncpg.InvalidPasswordError) as exc:
        raise ConfigurationError(
            f"DATABASE_URL: PostgreSQL refused the login ({exc}): fix the user or password "
            "in DATABASE_URL"
        ) from exc
    except RETRYABLE_ERRORS as exc:
        # A lost or broken connection, a deadlock, a serialization failure: nothing was
        # written, and the same statement may succeed when tried again.
        raise BackendUnavailable("postgres", f"{type(exc).__name__}: {exc}") from exc


async def init_connection(conn: asyncpg.Connection) -> None:
    """JSONB arrives as Python objects; it is sent as JSON text the caller already encoded."""
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", format="text", encoder=_encode_json, decoder=decode_json
    )


def _encode_json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def decode_json(text: str) -> Any:
    """A JSONB value as Python. A value beyond the limits of json_values.py (written before
    they existed, or by hand) decodes to ``{UNDECODABLE: reason}`` instead of failing the
    whole statement: one such row must not break a claim batch or a listing page."""
    if text.count("{") + text.count("[") > JSON_MAX_DEPTH:  # cheap: only deep values scan
        reason = scan_json_text(text.encode())
        if reason is not None:
            return {UNDECODABLE: reason}
    try:
        return json.loads(text)
    except (RecursionError, ValueError) as exc:
        return {UNDECODABLE: f"{type(exc).__name__}: {exc}"[:200]}


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release without asyncpg's default reset query (RESET ALL, UNLISTEN *, ...): that
    is one more round trip per statement on the hot path. It is safe because no statement
    here leaves session state behind: the advisory lock and LISTEN holders undo their own
    state, and close their connection when they cannot (see PgStore.reconcile_lock and
    PgStore.listening)."""


def _server_settings(schema: str | None, synchronous_commit: bool) -> dict[str, str]:
    settings = {"application_name": "hybridq"}
    if not synchronous_commit:
        settings["synchronous_commit"] = "off"
    if schema:
        settings["search_path"] = schema
    return settings


async def open_connection(dsn: str, *, schema: str | None = None) -> asyncpg.Connection:
    """A connection of its own, outside every pool: for what holds a session for long (an
    advisory lock, LISTEN), so that it never takes a pooled connection from the statements
    that must run meanwhile (a pool of one would otherwise deadlock)."""
    async with translate_errors():
        conn = await asyncpg.connect(dsn, server_settings=_server_settings(schema, True))
        await init_connection(conn)
    return conn


async def create_pool(
    dsn: str,
    *,
    schema: str | None = None,
    min_size: int = 1,
    max_size: int = 10,
    synchronous_commit: bool = True,
) -> asyncpg.Pool:
    server_settings = _server_settings(schema, synchronous_commit)
    async with translate_errors():
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=init_connection,
            reset=_keep_session,
            server_settings=server_settings,
        )
    assert pool is not None
    return pool


class TimedPool:
    """The statements of a pool, each waiting at most ``timeout`` seconds for a connection:
    a pool that stays busy is a logged, retried BackendUnavailable, never a silent hang."""

    def __init__(self, pool: asyncpg.Pool, timeout: float) -> None:
        self.pool = pool
        self.timeout = timeout

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[PoolConnectionProxy[asyncpg.Record]]:
        try:
            conn = await self.pool.acquire(timeout=self.timeout)
        except TimeoutError:
            raise BackendUnavailable(
                "postgres",
                f"no pooled connection free within {self.timeout:g}s "
                f"(pool of {self.pool.get_max_size()}; see HYBRIDQ_POOL_MAX_SIZE)",
            ) from None
        try:
            yield conn
        finally:
            await self.pool.release(conn)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.acquire() as conn:
            return await conn.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self.acquire() as conn:
            return await conn.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        async with self.acquire() as conn:
            return await conn.execute(query, *args)
