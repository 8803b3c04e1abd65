"""Request-size limit (an ASGI middleware: 413 before anything is parsed) and the per-user
enqueue rate limit (a token bucket in Redis, shared by every API process)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from queue_core.index.redis_index import lua_script

log = logging.getLogger(__name__)


class BodySizeLimit:
    """Rejects a request whose Content-Length, or whose streamed body, exceeds ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _send_413(send, self.max_bytes)
            return
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
                    await _send_413(send, self.max_bytes)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not rejected:  # the 413 is the response; drop whatever the app says after it
                await send(message)

        await self.app(scope, limited_receive, guarded_send)


async def _send_413(send: Send, max_bytes: int) -> None:
    body = json.dumps(
        {"error": {"code": "body_too_large", "message": f"request body exceeds {max_bytes} bytes"}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RateLimiter:
    """Token bucket per user: ``rate`` jobs/s on average, ``burst`` at once. Fails open:
    when Redis is unreachable, enqueue is allowed (a Redis outage must not stop enqueue)."""

    def __init__(self, client: aioredis.Redis, namespace: str, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._namespace = namespace
        self._script = client.register_script(lua_script("rate_limit"))

    async def take(self, user_key: str, cost: int) -> float:
        """0.0 when allowed, else the seconds to wait before ``cost`` tokens are available."""
        if self.rate <= 0:
            return 0.0
        key = f"{{{self._namespace}:rate}}:{user_key}"
        try:
            reply: Any = await self._script(
                keys=[key], args=[self.rate, self.burst, int(time.time() * 1000), cost]
            )
        except (RedisError, OSError) as exc:
            log.warning("rate limit unavailable; allowing", extra={"error": str(exc)})
            return 0.0
        return 0.0 if int(reply[0]) == 1 else max(int(reply[1]), 1) / 1000.0
