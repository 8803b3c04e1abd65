"""Security headers on every response: an ASGI middleware, so that the API's JSON, the
error handlers' answers, the size limit's 413 and the HTML pages all carry them.

A response that sets one of these headers itself keeps its own value (the dashboard and the
documentation pages send their own Content-Security-Policy; static assets their own
Cache-Control). Any ``Server`` header is dropped: the server banner tells an attacker which
exploits to try and tells a client nothing it needs.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    # Job data is private to its owner: no browser or proxy cache may keep a copy.
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    # A JSON answer opened in a browser runs nothing, loads nothing, and is never framed.
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
HSTS = (b"strict-transport-security", b"max-age=31536000")
"""Sent on https only (directly, or through a proxy trusted with --proxy-headers): a year of
https-only for this host in browsers that have seen it once. No includeSubDomains: the API's
host does not decide for its siblings."""


class SecurityHeaders:
    """Adds ``DEFAULT_HEADERS`` (and HSTS on https) to every HTTP response that does not set
    them itself, and removes the Server header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = DEFAULT_HEADERS + ((HSTS,) if scope.get("scheme") == "https" else ())

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"server"]
                present = {k.lower() for k, _ in headers}
                headers.extend(h for h in extra if h[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
