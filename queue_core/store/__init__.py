"""The Postgres store: the durable record of every job, and the only part of hybridq that
imports asyncpg. Owns the pool (connection.py), every SQL statement (queries.sql, loaded by
queries.py), the JobStore implementation (pg_store.py), API tokens (tokens.py) and dashboard
sessions (sessions.py), and the migrations runner. May import
the pure core only."""

from .connection import Pool, create_pool, translate_errors
from .migrate import apply_migrations, check_schema, migrate
from .pg_store import PgStore, open_lease_store
from .sessions import PgSessionStore
from .tokens import PgTokenStore

__all__ = [
    "PgSessionStore",
    "PgStore",
    "PgTokenStore",
    "Pool",
    "apply_migrations",
    "check_schema",
    "create_pool",
    "migrate",
    "open_lease_store",
    "translate_errors",
]
