"""WakeListener: the pub/sub wake-up of idle workers while they cannot use a blocking pop
(their types are claimed from Postgres)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from queue_core import keys

log = logging.getLogger(__name__)


class WakeListener:
    """Sets ``event`` whenever a job of one of ``job_types`` is indexed.

    Runs as a background task; on a Redis error it waits, resubscribes, and sets the event
    once so the runner re-checks anything it may have missed meanwhile.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        namespace: str,
        job_types: Sequence[str],
        event: asyncio.Event,
    ) -> None:
        self._client = client
        self._channels = [keys.type_keys(namespace, t).wake_channel for t in job_types]
        self._event = event

    async def run(self) -> None:
        delay = 0.1
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*self._channels)
                delay = 0.1
                self._event.set()
                while True:
                    # Short waits, not timeout=None: a read must return before the client's
                    # socket_timeout turns an idle channel into an error.
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._event.set()
            except Exception as exc:  # lost Redis, or anything else: subscribe again
                log.debug(
                    "wake listener lost redis", extra={"action": "wake_listener", "error": str(exc)}
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            finally:
                try:
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                except (RedisError, ConnectionError, OSError):
                    pass
