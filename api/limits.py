"""Request-body limits, enforced by an ASGI middleware before anything is parsed:

- size: a body over ``max_bytes`` (declared by Content-Length, or streamed) gets 413;
- JSON shape: a JSON body nested deeper than ``max_depth`` or holding a number longer than
  ``JSON_MAX_NUMBER_CHARS`` characters, or that is not UTF-8, gets 422. These are the limits
  of queue_core.json_values, the same as ``create()``'s; the scan never parses, so neither
  the JSON parser's recursion nor a 5,000-digit number conversion is ever reached.

Both answer with the API's error shape ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import email.message
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from queue_core.json_values import JSON_MAX_DEPTH, scan_json_text

BODY_ENVELOPE_DEPTH = 3
"""Levels a request body wraps around a job's input: ``{"jobs": [{"input": ...}]}`` (POST
/jobs needs one). The scan allows the input ``JSON_MAX_DEPTH`` levels inside the deepest
envelope; each route then checks its input against ``JSON_MAX_DEPTH`` exactly."""


class BodyLimits:
    """Rejects a request whose body exceeds ``max_bytes`` (413), and a JSON body that breaks
    the nesting, number-size or encoding limits (422), before the app reads it."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, max_depth: int = JSON_MAX_DEPTH + BODY_ENVELOPE_DEPTH
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _send_error(send, 413, "body_too_large", self._too_large())
            return
        if _is_json(headers.get(b"content-type")):
            await self._json_request(scope, receive, send)
        else:
            await self._streamed_request(scope, receive, send)

    def _too_large(self) -> str:
        return f"request body exceeds {self.max_bytes} bytes"

    async def _json_request(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the whole body (at most max_bytes), scan it, then hand it to the app."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _send_error(send, 413, "body_too_large", self._too_large())
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        reason = _json_problem(body, self.max_depth)
        if reason is not None:
            await _send_error(send, 422, "validation_error", f"body: {reason}")
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: only a disconnect can come
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _streamed_request(self, scope: Scope, receive: Receive, send: Send) -> None:
        seen = 0
        rejected = False

        async def limited_receive() -> Message:
            # Once the body is too large, answer 413 here and tell the app the client went
            # away: raising instead would reach the app's body parser, which reports any
            # error while reading as a 400.
            nonlocal seen, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    rejected = True
                    await _send_error(send, 413, "body_too_large", self._too_large())
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not rejected:  # the 413 is the response; drop whatever the app says after it
                await send(message)

        await self.app(scope, limited_receive, guarded_send)


def _is_json(content_type: bytes | None) -> bool:
    """Whether FastAPI would parse this body as JSON (application/json or */*+json)."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type.decode("latin-1")
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _json_problem(body: bytes, max_depth: int) -> str | None:
    """Why ``body`` must be refused before parsing, or None."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8 (JSON bodies must be UTF-8)"
    reason = scan_json_text(body, max_depth=max_depth)
    if reason is not None and "nested" in reason:
        return (
            f"nested too deep: a job's input may nest {JSON_MAX_DEPTH} levels "
            f"(the whole body {max_depth})"
        )
    return reason


async def _send_error(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
