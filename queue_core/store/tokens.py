"""PgTokenStore: managed API tokens (the ``api_tokens`` table, migration 0008). Implements
ports.TokenStore; only hashes are ever written or read."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from queue_core.ids import uuid7
from queue_core.ports import ApiToken

from .connection import translate_errors
from .queries import Q


class PgTokenStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def insert_api_token(
        self,
        token_hash: str,
        *,
        user_id: str | None,
        admin: bool,
        name: str | None,
        expires_at: datetime | None,
    ) -> ApiToken:
        """Store a new token's hash. Raises InvalidJob if a CHECK refuses a field."""
        async with translate_errors():
            row = await self.pool.fetchrow(
                Q.insert_api_token, uuid7(), token_hash, user_id, admin, name, expires_at
            )
        assert row is not None
        return _token(row)

    async def list_api_tokens(self) -> list[ApiToken]:
        async with translate_errors():
            return [_token(r) for r in await self.pool.fetch(Q.list_api_tokens)]

    async def revoke_api_token(self, token_id: uuid.UUID) -> ApiToken | None:
        """The token, revoked (now, or when it was first revoked); None if no such id."""
        async with translate_errors():
            row = await self.pool.fetchrow(Q.revoke_api_token, token_id)
        return _token(row) if row is not None else None

    async def find_api_token(self, token_hash: str) -> ApiToken | None:
        """The unrevoked token with this hash, expired or not; None if there is none."""
        async with translate_errors():
            row = await self.pool.fetchrow(Q.find_api_token, token_hash)
        return _token(row) if row is not None else None


def _token(row: asyncpg.Record) -> ApiToken:
    return ApiToken(
        id=row["id"],
        user_id=row["user_id"],
        admin=row["admin"],
        name=row["name"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
    )
