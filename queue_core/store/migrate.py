"""Forward-only schema migrations: the numbered SQL files of the top-level ``migrations/``.

``apply_migrations`` takes a session-level advisory lock first, so several pods running
``hybridq migrate`` at once apply each file exactly once; the others wait, then find
nothing to do. Each file runs in its own transaction with its row in ``schema_migrations``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from queue_core.errors import ConfigurationError

from .connection import translate_errors

log = logging.getLogger(__name__)

# Keyed by the target schema's name, taken before the schema is created: concurrent first
# runs would otherwise race on CREATE SCHEMA.
_LOCK_SQL = "SELECT pg_advisory_lock(hashtext('hybridq.migrate.' || $1))"
_UNLOCK_SQL = "SELECT pg_advisory_unlock(hashtext('hybridq.migrate.' || $1))"
_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


@dataclass(frozen=True)
class Migration:
    version: str  # the file name without .sql, e.g. "0001_create_jobs"
    sql: str


def migrations_dir() -> Path:
    """The migrations: the top-level ``migrations/`` of a checkout (the single source), or
    the copy a built wheel carries inside the package (pyproject maps one to the other)."""
    package = Path(__file__).resolve().parents[1]  # queue_core/
    for folder in (package / "migrations", package.parent / "migrations"):
        if folder.is_dir():
            return folder
    raise FileNotFoundError(f"no migrations directory next to {package}")


def bundled_migrations() -> list[Migration]:
    files = sorted(migrations_dir().glob("*.sql"), key=lambda f: f.name)
    return [Migration(f.name.removesuffix(".sql"), f.read_text("utf-8")) for f in files]


async def apply_migrations(conn: asyncpg.Connection, schema: str | None = None) -> list[str]:
    """Apply the bundled migrations not yet recorded; return the versions applied now."""
    target = schema or await conn.fetchval("SELECT current_schema()")
    await conn.execute(_LOCK_SQL, target)
    try:
        if schema:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote_ident(schema)}")
            await conn.execute(f"SET search_path TO {_quote_ident(schema)}")
        await conn.execute(_CREATE_LEDGER)
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        applied: list[str] = []
        for migration in bundled_migrations():
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)", migration.version
                )
            log.info("migration applied", extra={"action": "migrate", "version": migration.version})
            applied.append(migration.version)
        return applied
    finally:
        await conn.execute(_UNLOCK_SQL, target)


async def migrate(database_url: str, schema: str | None = None) -> list[str]:
    """``hybridq migrate``: connect, apply what is missing, disconnect; returns the versions
    applied now. Raises BackendUnavailable when Postgres cannot be reached."""
    async with translate_errors():
        conn = await asyncpg.connect(database_url)
        try:
            return await apply_migrations(conn, schema)
        finally:
            await conn.close()


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def check_schema(database_url: str, schema: str | None = None) -> None:
    """That Postgres answers and ``schema`` (default: the search_path's) holds every bundled
    migration. Raises BackendUnavailable if Postgres cannot be reached, ConfigurationError
    (naming the setting and the fix) for a wrong database, role, password or schema."""
    async with translate_errors():
        conn = await asyncpg.connect(
            database_url, server_settings={"search_path": schema} if schema else None
        )
        try:
            where = schema or await conn.fetchval("SELECT current_schema()") or "(none)"
            if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
                raise ConfigurationError(
                    f"the jobs table does not exist in schema {where}: run `hybridq migrate`, "
                    "or set HYBRIDQ_DB_SCHEMA to the schema you migrated"
                )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        finally:
            await conn.close()
    missing = [m.version for m in bundled_migrations() if m.version not in done]
    if missing:
        raise ConfigurationError(
            f"schema {where} lacks migration(s) {', '.join(missing)}: run `hybridq migrate`"
        )
