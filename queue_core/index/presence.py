"""Workers announce the job types they have registered while they are alive, so that stats,
the dashboard and a metric can show queued jobs of types no live worker runs (a typo'd type,
or a worker pool that is down).

Each worker keeps a key of its own with a time to live (keys.worker_key), renewed every
third of it: a worker that dies simply stops renewing, and its key expires. A sorted set
(keys.workers_key) lists the worker ids for readers, so reading never scans the keyspace;
ids whose key is gone are skipped, and dropped from the set once a day old. Losing all of
this (a Redis restart) costs one renewal period of "no live worker" in the stats, nothing
else: no claim or job depends on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence

import redis.asyncio as aioredis

from queue_core import keys
from queue_core.errors import BackendUnavailable
from queue_core.models import LiveWorker

from .client import translate_errors

log = logging.getLogger(__name__)

DIRECTORY_KEEP_SECONDS = 86_400.0
"""Ids of workers not heard of for this long leave the directory (their keys expired long
before); it holds at most a day of worker restarts."""
WITHDRAW_TIMEOUT_SECONDS = 1.0
"""A stopping worker waits at most this long to remove its announcement (else it expires)."""


async def announce_worker(
    client: aioredis.Redis,
    namespace: str,
    worker_id: str,
    job_types: Sequence[str],
    ttl_seconds: float,
) -> None:
    """Write (or renew) one worker's announcement for ``ttl_seconds``, in one MULTI.
    Raises BackendUnavailable when Redis cannot be reached."""
    now_ms = int(time.time() * 1000)
    pipe = client.pipeline(transaction=True)
    pipe.set(
        keys.worker_key(namespace, worker_id),
        json.dumps({"job_types": sorted(job_types)}),
        px=max(int(ttl_seconds * 1000), 1),
    )
    pipe.zadd(keys.workers_key(namespace), {worker_id: now_ms})
    pipe.zremrangebyscore(
        keys.workers_key(namespace), "-inf", now_ms - int(DIRECTORY_KEEP_SECONDS * 1000)
    )
    async with translate_errors():
        await pipe.execute()


async def withdraw_worker(client: aioredis.Redis, namespace: str, worker_id: str) -> None:
    """Remove a stopping worker's announcement at once (rather than at its expiry)."""
    pipe = client.pipeline(transaction=True)
    pipe.delete(keys.worker_key(namespace, worker_id))
    pipe.zrem(keys.workers_key(namespace), worker_id)
    async with translate_errors():
        await pipe.execute()


async def keep_announcing(
    client: aioredis.Redis,
    namespace: str,
    worker_id: str,
    job_types: Sequence[str],
    ttl_seconds: float,
) -> None:
    """Announce the worker every ``ttl_seconds / 3`` until cancelled, then withdraw it.
    Never raises for Redis trouble: a failed renewal is logged (once per outage) and tried
    again at the next period."""
    failing = False
    try:
        while True:
            try:
                await announce_worker(client, namespace, worker_id, job_types, ttl_seconds)
            except BackendUnavailable as exc:
                if not failing:
                    log.warning(
                        "worker announcement failed; stats may show its job types unserved",
                        extra={"action": "announce_worker", "worker_id": worker_id,
                               "error": str(exc)},
                    )
                failing = True
            else:
                failing = False
            await asyncio.sleep(ttl_seconds / 3)
    finally:
        with contextlib.suppress(BackendUnavailable, TimeoutError):
            await asyncio.wait_for(
                withdraw_worker(client, namespace, worker_id), WITHDRAW_TIMEOUT_SECONDS
            )


async def live_workers(client: aioredis.Redis, namespace: str) -> list[LiveWorker]:
    """The workers whose announcement has not expired, by worker id. Two round trips
    (the directory, then every announcement in one MGET), whatever the keyspace holds."""
    async with translate_errors():
        ids = [
            member.decode() if isinstance(member, bytes) else str(member)
            for member in await client.zrange(keys.workers_key(namespace), 0, -1)
        ]
        if not ids:
            return []
        values = await client.mget([keys.worker_key(namespace, i) for i in ids])
    found = []
    for worker_id, value in zip(ids, values, strict=True):
        if value is None:
            continue  # expired: the worker stopped renewing
        try:
            job_types = json.loads(value)["job_types"]
        except (ValueError, KeyError, TypeError):
            continue  # not written by hybridq
        found.append(LiveWorker(worker_id, tuple(str(t) for t in job_types)))
    return sorted(found, key=lambda w: w.worker_id)
