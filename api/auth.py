"""Bearer-token authentication.

Tokens are configured as SHA-256 hashes (``HYBRIDQ_API_TOKENS``), so neither the config nor a
log ever holds one in plaintext. A fast hash is enough: tokens are 256 random bits, so
there is nothing to brute-force that a slow KDF would protect. Each hash maps to one user id
(which enqueues as that user and sees only that user's jobs) or to the admin role.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

TOKEN_PREFIX = "hq_"


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
    never by content)."""
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


class TokenVerifier:
    def __init__(self, entries: list[str]) -> None:
        self._principals = parse_token_entries(entries)

    def verify(self, authorization: str | None) -> Principal | None:
        """The principal of an ``Authorization: Bearer <token>`` header, or None."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token or len(token) > 512:
            return None
        return self._principals.get(hash_token(token.strip()))
