"""Live job events through Redis: the EventPublisher that workers and services tell of
committed changes (and of what handlers emit), and the EventHub through which a process
follows them (wait(), the API's Server-Sent Events).

Postgres stays the truth: an event says that a change was committed; a reader that needs
the result reads it from Postgres. Publishing happens in the background, in batches, after
the commit, and a Redis outage only costs the live view (readers fall back to polling
Postgres; emitted events during the outage are lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from queue_core import keys
from queue_core.errors import BackendUnavailable
from queue_core.models import JobEvent

from .client import lua_script

log = logging.getLogger(__name__)

STREAM_MAXLEN = 1000
"""Emitted events a job's stream keeps at most (the oldest are trimmed)."""
STREAM_TTL_SECONDS = 3600
"""A job's event stream expires this long after its last event."""
PENDING_MAX = 100_000
"""Events waiting for Redis at most; past it (a long outage) the oldest are dropped."""
SUBSCRIBER_QUEUE_MAX = 1000
"""Messages a reader may fall behind by before it is dropped (a slow SSE client)."""


class EventPublisher:
    """Batches job events and emitted events and writes them to Redis in the background:
    one command per batch (per job type for emitted events)."""

    def __init__(self, client: aioredis.Redis, namespace: str, *, enabled: bool = True) -> None:
        self.namespace = namespace
        self.enabled = enabled
        self._client = client
        self._publish = client.register_script(lua_script("publish_events"))
        self._append = client.register_script(lua_script("append_events"))
        self._events: list[JobEvent] = []
        self._emitted: list[tuple[str, str, str]] = []  # (job_type, job_id, json)
        self._writer: asyncio.Task[None] | None = None
        self._down = False  # logged once per outage

    def publish(self, events: Sequence[JobEvent]) -> None:
        """Tell live readers of these committed changes; returns at once."""
        if self.enabled and events:
            self._events.extend(events)
            self._start()

    def append(self, job_type: str, job_id: str, data_json: str) -> None:
        """Append an emitted event to its job's stream; returns at once."""
        if self.enabled:
            self._emitted.append((job_type, job_id, data_json))
            self._start()

    async def flush(self) -> None:
        """Until everything submitted so far was written (or given up on)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.wait({self._writer})

    async def aclose(self, timeout: float = 2.0) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), timeout)
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            await asyncio.wait({self._writer})

    def _start(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending())

    async def _write_pending(self) -> None:
        while self._events or self._emitted:
            emitted, self._emitted = self._emitted, []
            events, self._events = self._events, []
            try:
                await self._write_emitted(emitted)  # before the statuses: "done" comes last
                await self._write_events(events)
                self._down = False
            except (RedisError, OSError) as exc:
                self._keep_for_later(emitted, events, exc)
                await asyncio.sleep(0.5)

    async def _write_emitted(self, emitted: list[tuple[str, str, str]]) -> None:
        by_type: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for job_type, job_id, data in emitted:
            by_type[job_type].append((job_id, data))
        for job_type, items in by_type.items():
            streams: dict[str, int] = {}
            args: list[Any] = [STREAM_MAXLEN, STREAM_TTL_SECONDS]
            for job_id, data in items:
                key = keys.events_stream(self.namespace, job_type, job_id)
                position = streams.setdefault(key, len(streams) + 1)
                args += [position, keys.job_channel(self.namespace, job_id), data]
            await self._append(keys=list(streams), args=args)

    async def _write_events(self, events: list[JobEvent]) -> None:
        if not events:
            return
        args: list[str] = []
        for event in events:
            payload = json.dumps(event.payload(), separators=(",", ":"))
            args += [keys.job_channel(self.namespace, event.job_id), payload]
            if event.kind == "status":
                args += [keys.user_channel(self.namespace, event.user_id), payload]
        await self._publish(args=args)

    def _keep_for_later(
        self, emitted: list[tuple[str, str, str]], events: list[JobEvent], exc: Exception
    ) -> None:
        if not self._down:
            self._down = True
            log.warning(
                "live events not published; retrying (readers poll postgres meanwhile)",
                extra={"action": "publish_events", "error": str(exc)},
            )
        self._emitted[:0] = emitted
        self._events[:0] = events
        for pending in (self._emitted, self._events):
            if len(pending) > PENDING_MAX:
                del pending[: len(pending) - PENDING_MAX]


class Subscription:
    """Messages (decoded JSON) of the channels one reader follows. ``overflowed`` is set
    when the reader fell SUBSCRIBER_QUEUE_MAX messages behind: it missed some."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(SUBSCRIBER_QUEUE_MAX)
        self.overflowed = False

    def deliver(self, message: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.overflowed = True

    async def get(self, timeout: float) -> dict[str, Any] | None:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None


class EventHub:
    """One pub/sub connection per process, shared by everything in it that follows jobs:
    readers subscribe to channels (or the every-user pattern) and get their messages in a
    queue of their own. While Redis is unreachable ``available`` is False and readers poll
    Postgres instead; the hub reconnects and resubscribes by itself."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._pubsub: Any = None
        self._readers: dict[str, set[Subscription]] = defaultdict(set)
        self._confirmed: dict[str, asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None
        self.available = True

    @asynccontextmanager
    async def subscribe(self, *channels: str) -> AsyncIterator[Subscription]:
        """Follow ``channels`` (a name ending in ``*`` is a pattern) for the block. Returns
        once Redis has confirmed them, so that nothing published after that is missed;
        raises BackendUnavailable("redis") when Redis is unreachable."""
        subscription = Subscription()
        fresh = [c for c in channels if not self._readers[c]]
        for channel in channels:
            self._readers[channel].add(subscription)
        try:
            try:
                await self._subscribe(fresh)
            except (RedisError, OSError, TimeoutError) as exc:
                self.available = False
                raise BackendUnavailable("redis", f"{type(exc).__name__}: {exc}") from exc
            yield subscription
        finally:
            for channel in channels:
                self._readers[channel].discard(subscription)
            await self._unsubscribe([c for c in channels if not self._readers[c]])

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()

    async def _subscribe(self, channels: list[str]) -> None:
        if not channels:
            return
        if self._pubsub is None:
            self._pubsub = self._client.pubsub()
        confirmed = []
        for channel in channels:
            self._confirmed[channel] = event = asyncio.Event()
            confirmed.append(event)
        patterns = [c for c in channels if c.endswith("*")]
        names = [c for c in channels if not c.endswith("*")]
        if patterns:
            await self._pubsub.psubscribe(*patterns)
        if names:
            await self._pubsub.subscribe(*names)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._read())
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in confirmed)), 5.0)

    async def _unsubscribe(self, channels: list[str]) -> None:
        if not channels or self._pubsub is None:
            return
        with contextlib.suppress(RedisError, OSError):
            patterns = [c for c in channels if c.endswith("*")]
            names = [c for c in channels if not c.endswith("*")]
            if patterns:
                await self._pubsub.punsubscribe(*patterns)
            if names:
                await self._pubsub.unsubscribe(*names)
        for channel in channels:
            self._readers.pop(channel, None)
            self._confirmed.pop(channel, None)

    async def _read(self) -> None:
        delay = 0.1
        while True:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
                self.available, delay = True, 0.1
            except (RedisError, OSError):
                self.available = False
                await asyncio.sleep(delay)  # redis-py resubscribes when it reconnects
                delay = min(delay * 2, 2.0)
                continue
            if message is not None:
                self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        channel = _text(message.get("pattern") if kind == "pmessage" else message.get("channel"))
        if kind in ("subscribe", "psubscribe"):
            confirmed = self._confirmed.get(channel)
            if confirmed is not None:
                confirmed.set()
            return
        if kind not in ("message", "pmessage"):
            return
        try:
            payload = json.loads(message["data"])
        except (TypeError, ValueError):
            return  # not ours
        for subscription in list(self._readers.get(channel, ())):
            subscription.deliver(payload)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def read_emitted(
    client: aioredis.Redis, namespace: str, job_type: str, job_id: str, after: str | None
) -> tuple[list[tuple[str, dict[str, Any]]], bool]:
    """The events a job's handler emitted after stream id ``after`` (all kept ones when
    None), oldest first, and whether some after ``after`` were trimmed meanwhile (the
    reader must start over from the job's current state). Raises BackendUnavailable."""
    key = keys.events_stream(namespace, job_type, job_id)
    try:
        entries: Any = await client.xrange(key, min=f"({after}" if after else "-", max="+")
        oldest: Any = await client.xrange(key, count=1) if after else []
    except (RedisError, OSError) as exc:
        raise BackendUnavailable("redis", f"{type(exc).__name__}: {exc}") from exc
    events = [(_text(i), json.loads(fields[b"d"])) for i, fields in entries or []]
    # ``after`` older than the oldest event kept: what came between may be gone
    trimmed = after is not None and (
        not oldest or _stream_id(_text(oldest[0][0])) > _stream_id(after)
    )
    return events, trimmed


def is_stream_id(value: str) -> bool:
    """Whether ``value`` has the shape of a Redis stream id (``<ms>-<seq>``)."""
    millis, dash, seq = value.partition("-")
    return bool(dash) and millis.isdigit() and seq.isdigit() and len(value) <= 40


def _stream_id(value: str | None) -> tuple[int, int]:
    millis, _, seq = (value or "0-0").partition("-")
    return int(millis), int(seq or 0)
