"""Dashboard sessions: what the browser holds is a random session id, never a token.

- Login checks an admin token (environment or managed) and opens a session: 256 random bits
  in an HttpOnly, SameSite=Strict cookie, Secure unless the request came over plain http
  from this machine to a loopback name (the dev server). Plain http from anywhere else is
  refused: the login form would carry the admin token in clear.
- Postgres keeps only the SHA-256 of the id (ports.SessionStore), with an idle and an
  absolute expiry; every replica reads the same rows, so logout ends the session everywhere
  at once, and the old cookie is worth nothing, on the dashboard or as a bearer token.
- Every request checks the token behind the session again (through the TokenVerifier's
  cache): revoking that token ends its sessions within the cache period.
- The CSRF token of a form is SHA-256("hybridq-csrf:" + session id): only a page that was
  rendered for the session knows it, and it needs no server secret.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets

from fastapi import Request

from queue_core.ports import SessionStore

from .auth import Principal, TokenVerifier, hash_token

COOKIE = "hybridq_session"
LEGACY_COOKIE = ("hybridq_dashboard", "/dashboard")
"""The cookie (name, path) that held the admin token itself before sessions: cleared at
login, never read."""
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def _loopback_address(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def cookie_secure(request: Request) -> bool | None:
    """Whether the session cookie must be Secure (True), may go without it (False: plain
    http from this machine to a loopback name, the dev server), or must not be set (None:
    plain http from elsewhere). Behind a TLS proxy the scheme is https only with
    ``hybridq api --proxy-headers``."""
    if request.url.scheme == "https":
        return True
    client = request.client.host if request.client else None
    if _loopback_address(client) and (request.url.hostname or "") in LOOPBACK_NAMES:
        return False
    return None


def csrf_token(session_id: str) -> str:
    return hashlib.sha256(f"hybridq-csrf:{session_id}".encode()).hexdigest()


def csrf_ok(session_id: str, submitted: str | None) -> bool:
    return submitted is not None and hmac.compare_digest(
        csrf_token(session_id).encode(), submitted.encode()
    )


class DashboardSessions:
    """Opens, checks and closes sessions in a SessionStore. Times are in seconds."""

    def __init__(self, verifier: TokenVerifier, idle_seconds: float, max_seconds: float) -> None:
        self.verifier = verifier
        self.idle_seconds = idle_seconds
        self.max_seconds = max_seconds

    async def open(self, store: SessionStore, token: str) -> str | None:
        """A new session id for an admin ``token``; None if it is not a live admin token.
        Sessions that have ended are deleted on the way."""
        principal = await self.verifier.principal_of_token(token)
        if principal is None or not principal.admin:
            return None
        session_id = secrets.token_urlsafe(32)
        await store.delete_ended_dashboard_sessions(self.idle_seconds)
        await store.insert_dashboard_session(
            hash_token(session_id), hash_token(token.strip()), self.max_seconds
        )
        return session_id

    async def check(self, store: SessionStore, session_id: str | None, activity: bool) -> bool:
        """Whether ``session_id`` names a live session of a still-valid admin token;
        ``activity`` (a page view, not the page's own refresh) restarts its idle clock."""
        if not session_id or not _SESSION_ID.fullmatch(session_id):
            return False  # not one of ours: no need to ask Postgres
        token_hash = await store.touch_dashboard_session(
            hash_token(session_id), self.idle_seconds, activity=activity
        )
        if token_hash is None:
            return False
        principal: Principal | None = await self.verifier.principal_of_hash(token_hash)
        if principal is None or not principal.admin:
            await store.delete_dashboard_session(hash_token(session_id))
            return False
        return True

    async def close(self, store: SessionStore, session_id: str) -> None:
        await store.delete_dashboard_session(hash_token(session_id))
