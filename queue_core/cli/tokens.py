"""``hybridq token new|list|revoke``: managed API tokens in Postgres (ports.TokenStore), and
``token new --env-entry`` for a HYBRIDQ_API_TOKENS entry that is never stored.

A token is printed once, when it is made; only its SHA-256 is kept. Every API replica
refuses a revoked or expired token within HYBRIDQ_API_TOKEN_CACHE_SECONDS, without a
restart."""

from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from hybridq_api.auth import config_entry, hash_token, new_token

from queue_core.errors import InvalidJob, JobNotFound
from queue_core.ports import ApiToken
from queue_core.settings import Settings
from queue_core.store import PgTokenStore, check_schema, create_pool

NAME_MAX = 200


@asynccontextmanager
async def _tokens(settings: Settings) -> AsyncIterator[PgTokenStore]:
    await check_schema(settings.database_url, settings.db_schema)
    pool = await create_pool(
        settings.database_url, schema=settings.db_schema, min_size=1, max_size=1
    )
    try:
        yield PgTokenStore(pool)
    finally:
        await pool.close()


async def new(args: argparse.Namespace, settings: Settings) -> int:
    if args.user is not None and not 0 < len(args.user) <= 200:
        raise InvalidJob("--user must be 1..200 characters")
    if args.name is not None and not 0 < len(args.name) <= NAME_MAX:
        raise InvalidJob(f"--name must be 1..{NAME_MAX} characters")
    token = new_token()
    if args.env_entry:
        if args.expires is not None or args.name is not None:
            raise InvalidJob(
                "--expires and --name need a managed token: drop --env-entry (environment "
                "tokens cannot expire and have no name)"
            )
        print(f"token: {token}")
        print("add to HYBRIDQ_API_TOKENS (a JSON list; the token itself is not stored):")
        print(json.dumps(config_entry(token, user_id=args.user, admin=args.admin)))
        return 0
    expires_at = None
    if args.expires is not None:
        expires_at = datetime.now(UTC) + timedelta(seconds=args.expires)
    async with _tokens(settings) as tokens:
        stored = await tokens.insert_api_token(
            hash_token(token),
            user_id=None if args.admin else args.user,
            admin=args.admin,
            name=args.name,
            expires_at=expires_at,
        )
    print(f"token: {token}")
    print(f"id: {stored.id}  {_owner(stored)}  expires: {_when(stored.expires_at)}")
    print("shown once: only its SHA-256 is stored. Revoke it with: hybridq token revoke ID")
    return 0


async def list_(args: argparse.Namespace, settings: Settings) -> int:
    async with _tokens(settings) as tokens:
        found = await tokens.list_api_tokens()
    now = datetime.now(UTC)
    if args.json:
        print(json.dumps([_as_json(t, now) for t in found], indent=2))
        return 0
    rows = [("id", "owner", "name", "created", "expires", "state")] + [
        (str(t.id), _owner(t), t.name or "-", _when(t.created_at), _when(t.expires_at),
         t.state(now))
        for t in found
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


async def revoke(args: argparse.Namespace, settings: Settings) -> int:
    try:
        token_id = uuid.UUID(args.token_id)
    except ValueError:
        raise InvalidJob(
            f"not a token id (a UUID from `hybridq token list`): {args.token_id!r}"
        ) from None
    async with _tokens(settings) as tokens:
        revoked = await tokens.revoke_api_token(token_id)
    if revoked is None:
        raise JobNotFound(f"no token with id {token_id}")
    print(
        f"revoked token {revoked.id} ({_owner(revoked)}) at {_when(revoked.revoked_at)}; "
        f"every API replica refuses it within {settings.api_token_cache_seconds:g} s"
    )
    return 0


def _owner(token: ApiToken) -> str:
    return "admin" if token.admin else f"user:{token.user_id}"


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment is not None else "never"


def _as_json(token: ApiToken, now: datetime) -> dict[str, object]:
    return {
        "id": str(token.id),
        "user_id": token.user_id,
        "admin": token.admin,
        "name": token.name,
        "created_at": token.created_at.isoformat(),
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
        "state": token.state(now),
    }
