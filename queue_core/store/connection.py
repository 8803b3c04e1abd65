"""Connections to Postgres: the pool every store method uses, and the one place driver
errors become QueueErrors (an unreachable server is BackendUnavailable("postgres"), a
constraint violation is InvalidJob or DuplicateJob)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from queue_core.errors import BackendUnavailable, ConfigurationError, DuplicateJob, InvalidJob

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

RETRYABLE_ERRORS = (
    *CONNECTION_ERRORS,
    asyncpg.TransactionRollbackError,  # SQLSTATE class 40: deadlock, serialization failure
)


@asynccontextmanager
async def translate_errors() -> AsyncIterator[None]:
    try:
        yield
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
        "jsonb", schema="pg_catalog", format="text", encoder=_encode_json, decoder=json.loads
    )


def _encode_json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release without asyncpg's default reset query (RESET ALL, UNLISTEN *, ...): that
    is one more round trip per statement on the hot path. It is safe because no statement
    here leaves session state behind: the advisory lock and LISTEN holders undo their own
    state, and close their connection when they cannot (see PgStore.reconcile_lock and
    PgStore.listening)."""


async def create_pool(
    dsn: str,
    *,
    schema: str | None = None,
    min_size: int = 1,
    max_size: int = 10,
    synchronous_commit: bool = True,
) -> asyncpg.Pool:
    server_settings = {"application_name": "hybridq"}
    if not synchronous_commit:
        server_settings["synchronous_commit"] = "off"
    if schema:
        server_settings["search_path"] = schema
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
