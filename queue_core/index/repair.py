"""What the reconciler needs of Redis beyond the hot path: reading scores in bulk, walking
the sets, removing stale members safely, and the epoch protocol that tells workers whether
an index is complete. Kept apart from redis_index.py so the claim path stays short."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

from queue_core import keys
from queue_core.keys import IndexedScores, IndexSet, IndexWrites
from queue_core.models import IndexEntry

from .client import lua_script, translate_errors
from .redis_index import RedisIndex


class IndexRepair:
    """Implements ports.IndexMaintenance on a RedisIndex's client and namespace."""

    def __init__(self, index: RedisIndex) -> None:
        self.index = index
        self.client = index.client
        self._remove_if_unchanged = self.client.register_script(lua_script("remove_if_unchanged"))
        self._finish_rebuild = self.client.register_script(lua_script("finish_rebuild"))

    async def scores_of(self, job_type: str, entries: Sequence[IndexEntry]) -> list[IndexedScores]:
        """Where each job stands in Redis: two ZMSCOREs, one round trip."""
        if not entries:
            return []
        k = self.index.keys_for(job_type)
        pipe = self.client.pipeline(transaction=False)
        ready_members: list[Any] = [keys.ready_member(e.id) for e in entries]
        scheduled_members: list[Any] = [keys.scheduled_member(e.id, e.priority) for e in entries]
        pipe.zmscore(k.ready, ready_members)
        pipe.zmscore(k.scheduled, scheduled_members)
        async with translate_errors():
            ready, scheduled = await pipe.execute()
        return [IndexedScores(r, s) for r, s in zip(ready, scheduled, strict=True)]

    async def put(self, job_type: str, writes: IndexWrites) -> None:
        """Apply one page of repairs in one round trip."""
        k = self.index.keys_for(job_type)
        pipe = self.client.pipeline(transaction=False)
        if writes.ready:
            pipe.zadd(k.ready, writes.ready)
        if writes.scheduled:
            pipe.zadd(k.scheduled, writes.scheduled)
            pipe.zadd(k.wake, {keys.WAKE_MEMBER: 0})  # see keys.TypeKeys.wake
        if writes.remove_ready:
            pipe.zrem(k.ready, *writes.remove_ready)
        if writes.remove_scheduled:
            pipe.zrem(k.scheduled, *writes.remove_scheduled)
        if writes.ready or writes.scheduled:
            pipe.publish(k.wake_channel, b"1")
        async with translate_errors():
            await pipe.execute()

    async def job_types(self) -> set[str]:
        """Job types that have a ready or scheduled set in this namespace."""
        found: set[str] = set()
        async with translate_errors():
            async for key in self.client.scan_iter(
                match=keys.index_key_pattern(self.index.namespace), count=1000
            ):
                job_type = keys.job_type_of_key(self.index.namespace, key.decode())
                if job_type and key.decode().endswith((":ready", ":scheduled")):
                    found.add(job_type)
        return found

    async def scan_pages(
        self, job_type: str, which: IndexSet, page_size: int
    ) -> AsyncIterator[list[tuple[bytes, float]]]:
        """Pages of (member, score) of one set, via ZSCAN (memory stays flat)."""
        key = self.index.keys_for(job_type).set_key(which)
        cursor = 0
        while True:
            async with translate_errors():
                cursor, items = await self.client.zscan(key, cursor, count=page_size)
            if items:
                yield [(cast(bytes, member), float(cast(float, score))) for member, score in items]
            if cursor == 0:
                return

    async def remove_if_unchanged(
        self, job_type: str, which: IndexSet, members: Sequence[tuple[bytes, float]]
    ) -> int:
        """Remove members whose score is still the one read (lua/remove_if_unchanged.lua)."""
        if not members:
            return 0
        key = self.index.keys_for(job_type).set_key(which)
        args: list[bytes | str] = []
        for member, score in members:
            args += [member, repr(score)]
        async with translate_errors():
            return int(await self._remove_if_unchanged(keys=[key], args=args))

    async def epoch_missing(self, job_types: Sequence[str]) -> set[str]:
        if not job_types:
            return set()
        pipe = self.client.pipeline(transaction=False)
        for t in job_types:
            pipe.exists(self.index.keys_for(t).epoch)
        async with translate_errors():
            present = await pipe.execute()
        return {t for t, p in zip(job_types, present, strict=True) if not p}

    async def begin_rebuild(self, job_type: str) -> str:
        token = secrets.token_hex(8)
        async with translate_errors():
            await self.client.set(self.index.keys_for(job_type).rebuild, token, ex=3600)
        return token

    async def finish_rebuild(self, job_type: str, token: str) -> bool:
        k = self.index.keys_for(job_type)
        async with translate_errors():
            return bool(await self._finish_rebuild(keys=[k.rebuild, k.epoch], args=[token]))
