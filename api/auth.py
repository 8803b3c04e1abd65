"""Bearer-token authentication.

Two sources of tokens, both holding only SHA-256 hashes (never a token in plaintext): the
environment (``HYBRIDQ_API_TOKENS``, fixed for the life of the process) and managed tokens in
Postgres (``hybridq token new/list/revoke``), added and revoked without a restart. A fast
hash is enough: tokens are 256 random bits, so there is nothing to brute-force that a slow
KDF would protect. Each token is one user's (it enqueues as that user and sees only that
user's jobs) or an admin's.

Managed tokens are cached per process for ``api_token_cache_seconds`` (default 2 s): one
indexed lookup per token per period, none per request, and a revoked token is refused by
every replica within that period. Expiry is checked at each use, so it is exact.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from queue_core.ports import ApiToken, TokenStore

TOKEN_PREFIX = "hq_"
TOKEN_MAX_CHARS = 512
CACHE_MAX_ENTRIES = 10_000
"""Token hashes remembered per process; beyond this the oldest are forgotten (a flood of
made-up tokens costs lookups, not memory)."""


@dataclass(frozen=True)
class Principal:
    user_id: str | None  # None for an admin
    admin: bool

    @property
    def scope(self) -> str | None:
        """The owner whose jobs this principal may see: None means every owner's."""
        return None if self.admin else self.user_id


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def config_entry(token: str, *, user_id: str | None = None, admin: bool = False) -> str:
    """The HYBRIDQ_API_TOKENS entry for ``token``."""
    if admin:
        return f"{hash_token(token)}:admin"
    if not user_id:
        raise ValueError("a user token needs a user id")
    return f"{hash_token(token)}:user:{user_id}"


def parse_token_entries(entries: list[str]) -> dict[str, Principal]:
    """token hash -> principal. Raises ValueError naming a malformed entry (by position,
    never by content). Settings already refuses malformed entries; this is the parse."""
    principals: dict[str, Principal] = {}
    for position, entry in enumerate(entries):
        digest, _, role = entry.partition(":")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"api_tokens[{position}]: expected a 64-char lowercase sha256 hex")
        if role == "admin":
            principals[digest] = Principal(user_id=None, admin=True)
        elif role.startswith("user:") and 0 < len(role) - 5 <= 200:
            principals[digest] = Principal(user_id=role[5:], admin=False)
        else:
            raise ValueError(f"api_tokens[{position}]: role must be 'admin' or 'user:<id>'")
    return principals


def token_of(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > TOKEN_MAX_CHARS:
        return None
    return token


@dataclass(frozen=True)
class _Cached:
    token: ApiToken | None  # None: no live token has this hash
    read_at: float  # monotonic seconds


class TokenVerifier:
    """Who a token is, from the environment's entries or the managed tokens of ``store``
    (attached by the app's lifespan; without one only the environment's tokens work)."""

    def __init__(
        self,
        entries: list[str],
        cache_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._principals = parse_token_entries(entries)
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._now = now
        self._store: TokenStore | None = None
        self._cache: dict[str, _Cached] = {}
        self._reading: dict[str, asyncio.Future[ApiToken | None]] = {}  # hash -> read

    def attach(self, store: TokenStore | None) -> None:
        """Look managed tokens up in ``store`` from now on (None: environment only)."""
        self._store = store
        self._cache.clear()

    async def verify(self, authorization: str | None) -> Principal | None:
        """The principal of an ``Authorization: Bearer <token>`` header, or None. Raises
        BackendUnavailable when a managed token must be read and Postgres is down."""
        token = token_of(authorization)
        return await self.principal_of_hash(hash_token(token)) if token else None

    async def principal_of_token(self, token: str) -> Principal | None:
        """The principal of a token as given (a login form), or None."""
        token = token.strip()
        if not token or len(token) > TOKEN_MAX_CHARS:
            return None
        return await self.principal_of_hash(hash_token(token))

    async def principal_of_hash(self, digest: str) -> Principal | None:
        """The principal of the token whose SHA-256 hex is ``digest``, or None if no live
        token has it (unknown, revoked, or expired)."""
        found = self._principals.get(digest)
        if found is not None or self._store is None:
            return found
        managed = await self._managed(digest)
        if managed is None or managed.state(self._now()) != "active":
            return None
        return Principal(user_id=managed.user_id, admin=managed.admin)

    async def _managed(self, digest: str) -> ApiToken | None:
        cached = self._cache.get(digest)
        if cached is not None and self._clock() - cached.read_at < self._cache_seconds:
            return cached.token
        # One read per token at a time, however many requests wait for it; a request that
        # is cancelled while waiting does not cancel the read the others wait on.
        reading = self._reading.get(digest)
        if reading is None:
            reading = asyncio.ensure_future(self._read(digest))
            self._reading[digest] = reading
            reading.add_done_callback(lambda done: self._read_done(digest, done))
        return await asyncio.shield(reading)

    async def _read(self, digest: str) -> ApiToken | None:
        assert self._store is not None
        token = await self._store.find_api_token(digest)
        self._remember(digest, token)
        return token

    def _read_done(self, digest: str, reading: asyncio.Future[ApiToken | None]) -> None:
        self._reading.pop(digest, None)
        if not reading.cancelled():
            reading.exception()  # retrieved: its waiters got it, or there were none

    def _remember(self, digest: str, token: ApiToken | None) -> None:
        self._cache.pop(digest, None)
        if len(self._cache) >= CACHE_MAX_ENTRIES:
            del self._cache[next(iter(self._cache))]  # the oldest read
        self._cache[digest] = _Cached(token, self._clock())
