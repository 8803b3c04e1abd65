"""RedisIndex: the ready-index on the hot path (enqueue, claim, blocking pop).

It holds job ids only, never payloads; everything here can be rebuilt from Postgres.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Sequence

import redis.asyncio as aioredis

from queue_core import keys
from queue_core.models import ClaimedIds, IndexEntry, LiveWorker, PoppedId

from .client import lua_script, translate_errors
from .presence import keep_announcing, live_workers
from .wake import WakeListener

INDEX_CHUNK = 2000
"""Jobs per index_jobs.lua call at most: Lua's unpack() stops near 8,000 values."""
PROMOTE_LIMIT = 1000
"""Due scheduled jobs moved to the ready set per claim call at most (bounds script time)."""


class RedisIndex:
    """Implements ports.ReadyIndex on one client and key namespace."""

    def __init__(self, client: aioredis.Redis, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self._claim_ready = client.register_script(lua_script("claim_ready"))
        self._index_jobs = client.register_script(lua_script("index_jobs"))

    def keys_for(self, job_type: str) -> keys.TypeKeys:
        return keys.type_keys(self.namespace, job_type)

    async def add_jobs(self, entries: Sequence[IndexEntry]) -> None:
        """Index jobs and wake the workers of their types: one script call per job type
        (and per INDEX_CHUNK jobs), run concurrently."""
        if not entries:
            return
        by_type: dict[str, list[IndexEntry]] = defaultdict(list)
        for e in entries:
            by_type[e.job_type].append(e)
        calls = [
            self._index_chunk(job_type, chunk[i : i + INDEX_CHUNK])
            for job_type, chunk in by_type.items()
            for i in range(0, len(chunk), INDEX_CHUNK)
        ]
        async with translate_errors():
            if len(calls) == 1:
                await calls[0]
            else:
                await asyncio.gather(*calls)

    async def _index_chunk(self, job_type: str, entries: Sequence[IndexEntry]) -> None:
        k = self.keys_for(job_type)
        ready: list[int | bytes] = []
        scheduled: list[int | bytes] = []
        for e in entries:
            if e.deferred:
                scheduled += [keys.due_ms(e.scheduled_for), keys.scheduled_member(e.id, e.priority)]
            else:
                ready += [keys.ready_score(e.priority, e.scheduled_for), keys.ready_member(e.id)]
        await self._index_jobs(
            keys=[k.ready, k.scheduled, k.wake],
            args=[k.wake_channel, len(ready) // 2, *ready, *scheduled],
        )

    async def claim_ids(self, job_type: str, now_ms: int, count: int) -> ClaimedIds:
        k = self.keys_for(job_type)
        async with translate_errors():
            reply = await self._claim_ready(
                keys=[k.scheduled, k.ready, k.epoch], args=[now_ms, count, PROMOTE_LIMIT]
            )
        wait_ms = int(reply[0])
        if wait_ms == -2:
            return ClaimedIds(ids=[], scores=[], wait_ms=0, index_lost=True)
        pairs = [
            (keys.job_id_from_member(m), int(float(score)))
            for m, score in zip(reply[1::2], reply[2::2], strict=True)
            if keys.is_member(m, scheduled=False)  # a foreign member is dropped, not a crash
        ]
        return ClaimedIds(
            ids=[i for i, _ in pairs], scores=[score for _, score in pairs], wait_ms=wait_ms
        )

    async def restore_ids(
        self, job_type: str, ids: Sequence[uuid.UUID], scores: Sequence[int]
    ) -> None:
        if not ids:
            return
        mapping = {keys.ready_member(i): s for i, s in zip(ids, scores, strict=True)}
        async with translate_errors():
            await self.client.zadd(self.keys_for(job_type).ready, mapping)

    async def remove_jobs(self, entries: Sequence[IndexEntry]) -> None:
        if not entries:
            return
        pipe = self.client.pipeline(transaction=False)
        for e in entries:
            k = self.keys_for(e.job_type)
            pipe.zrem(k.ready, keys.ready_member(e.id))
            pipe.zrem(k.scheduled, keys.scheduled_member(e.id, e.priority))
        async with translate_errors():
            await pipe.execute()

    async def wait_pop(self, job_types: Sequence[str], timeout: float) -> PoppedId | None:
        """BZPOPMIN over the types' ready sets: Redis hands a newly indexed id straight to
        the one worker that has waited longest, with no wake-up message and no claim round
        trip in between. Scheduled jobs are promoted by claim_ids only: indexing one also
        fills the type's wake set, which this pop watches after the ready sets, and then
        returns None so that the caller claims (and learns when the job is due).
        The keys of several types lie in different Cluster slots: a worker serving several
        types needs a standalone Redis for this (see docs/capacity.md)."""
        ready_keys = {self.keys_for(t).ready: t for t in job_types}
        wake_keys = [self.keys_for(t).wake for t in job_types]
        async with translate_errors():
            reply = await self.client.bzpopmin([*ready_keys, *wake_keys], timeout=timeout)
        if reply is None:
            return None
        key, member, score = reply  # bytes, bytes, float (replies are not decoded)
        if member == keys.WAKE_MEMBER:
            return None
        if not isinstance(member, bytes) or not keys.is_member(member, scheduled=False):
            return None  # a foreign member is dropped
        job_type = ready_keys[key.decode() if isinstance(key, bytes) else str(key)]
        return PoppedId(job_type, keys.job_id_from_member(member), int(float(score)))

    async def listen(self, job_types: Sequence[str], event: asyncio.Event) -> None:
        await WakeListener(self.client, self.namespace, job_types, event).run()

    async def depths(self, job_types: Sequence[str]) -> dict[str, tuple[int, int]]:
        """(ready, scheduled) ids indexed per job type, in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for job_type in job_types:
            k = self.keys_for(job_type)
            pipe.zcard(k.ready)
            pipe.zcard(k.scheduled)
        async with translate_errors():
            counts = await pipe.execute()
        return {t: (counts[2 * i], counts[2 * i + 1]) for i, t in enumerate(job_types)}

    async def keep_worker_announced(
        self, worker_id: str, job_types: Sequence[str], ttl_seconds: float
    ) -> None:
        """Announce a worker and its job types, renewed until cancelled (presence.py)."""
        await keep_announcing(self.client, self.namespace, worker_id, job_types, ttl_seconds)

    async def live_workers(self) -> list[LiveWorker]:
        return await live_workers(self.client, self.namespace)

    async def ping(self) -> None:
        async with translate_errors():
            await self.client.ping()
