"""RateLimiter: a token bucket per caller in Redis, shared by every API process
(lua/rate_limit.lua). Fails open: a Redis outage must not stop enqueue."""

from __future__ import annotations

import logging
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from queue_core import keys

from .client import lua_script

log = logging.getLogger(__name__)


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
        key = keys.rate_limit_key(self._namespace, user_key)
        try:
            reply: Any = await self._script(
                keys=[key], args=[self.rate, self.burst, int(time.time() * 1000), cost]
            )
        except (RedisError, OSError) as exc:
            log.warning("rate limit unavailable; allowing", extra={"error": str(exc)})
            return 0.0
        return 0.0 if int(reply[0]) == 1 else max(int(reply[1]), 1) / 1000.0
