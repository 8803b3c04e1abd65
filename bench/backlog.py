"""S4 drain at a small vs a large backlog, S5 Redis memory per indexed job, S6 reconciler
time on a large backlog.

A backlog is filled server-side (one INSERT ... SELECT generate_series per 100k jobs: what
create_many would store, without a million round trips through Python), then the Redis index
is built the way it is after a Redis loss: the reconciler's run_once() finds the index
unmarked and re-indexes every queued job from Postgres. That run is S6's "index lost" time;
a second run_once(), with the index complete, is S6's "index complete" time.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from queue_core import Queue

from .noop_handlers import JOB_TYPE
from .sandbox import Servers, sandbox_queue
from .workers import drain

FILL_CHUNK = 100_000

# Ids are UUIDv7-shaped and increase with g (12 hex ms timestamp, version 7, 12-bit counter,
# variant, 60-bit tail), so Redis pops them in g order as it would real create() ids.
FILL_JOBS = """
INSERT INTO jobs (id, job_type, input, priority, max_retries, scheduled_for)
SELECT (lpad(to_hex($3::bigint + g / 4096), 12, '0') || '7' || lpad(to_hex(g % 4096), 3, '0')
        || '8' || lpad(to_hex(g), 15, '0'))::uuid,
       $1, jsonb_build_object('i', g, 't', $4::float8), 0, 3, $5::timestamptz
FROM generate_series($2::bigint, $2::bigint + $6::bigint - 1) AS g
"""


async def fill(queue: Queue, jobs: int) -> dict[str, float]:
    """Insert ``jobs`` queued no-op jobs, due now, then ANALYZE (as autovacuum would after a
    load this size). Redis is not touched."""
    started = time.perf_counter()
    now = time.time()
    base_ms = int(now * 1000)
    async with queue.pool.acquire() as conn:
        due = await conn.fetchval("SELECT date_trunc('milliseconds', now())")
        for first in range(0, jobs, FILL_CHUNK):
            count = min(FILL_CHUNK, jobs - first)
            await conn.execute(FILL_JOBS, JOB_TYPE, first, base_ms, now, due, count)
        await conn.execute("ANALYZE jobs")
    seconds = time.perf_counter() - started
    return {"jobs": jobs, "seconds": round(seconds, 2), "jobs_per_s": jobs / seconds}


async def index_sizes(queue: Queue) -> dict[str, int]:
    keys = queue.index.keys_for(JOB_TYPE)
    ready = await queue.redis.zcard(keys.ready)
    scheduled = await queue.redis.zcard(keys.scheduled)
    return {"ready": int(ready), "scheduled": int(scheduled)}


async def timed_run_once(queue: Queue) -> dict[str, Any]:
    started = time.perf_counter()
    result = await queue.reconciler().run_once()
    return {
        "seconds": round(time.perf_counter() - started, 3),
        "reindexed": result.reindexed,
        "drift_fixed": result.drift_fixed,
        "orphans_removed": result.orphans_removed,
        "indexes_rebuilt": result.indexes_rebuilt,
    }


async def build_index(queue: Queue, jobs: int) -> dict[str, Any]:
    """The first run_once() on a filled backlog: the index-lost rebuild. Fails loudly if the
    index does not end up holding every job."""
    rebuild = await timed_run_once(queue)
    sizes = await index_sizes(queue)
    if sizes["ready"] != jobs:
        raise RuntimeError(f"index holds {sizes['ready']} ready ids after the rebuild, not {jobs}")
    return {**rebuild, "index": sizes}


async def memory_per_job(servers: Servers, jobs: int) -> dict[str, Any]:
    """S5: bytes of Redis per indexed job: MEMORY USAGE of the ready set (exact, the whole
    set), and the INFO used_memory delta across the rebuild (noisy: the Redis is shared)."""
    async with sandbox_queue(servers) as queue:
        await fill(queue, jobs)
        before = (await queue.redis.info("memory"))["used_memory"]
        await build_index(queue, jobs)
        after = (await queue.redis.info("memory"))["used_memory"]
        keys = queue.index.keys_for(JOB_TYPE)
        usage = await queue.redis.memory_usage(keys.ready, samples=0)
        encoding = await queue.redis.object("encoding", keys.ready)
    return {
        "jobs": jobs,
        "bytes_per_job": usage / jobs,
        "ready_set_bytes": usage,
        "ready_set_encoding": encoding.decode() if isinstance(encoding, bytes) else encoding,
        "used_memory_delta_per_job": (after - before) / jobs,
    }


async def backlog_drain(
    servers: Servers, backlog: int, drain_jobs: int, *, concurrency: int, run_dir: Path,
    reconcile: bool, timeout: float = 180.0,
) -> dict[str, Any]:
    """Fill ``backlog`` jobs, index them, optionally time run_once() on the complete index
    (S6), then drain the first ``drain_jobs`` with one worker (S4; skipped if 0)."""
    out: dict[str, Any] = {"backlog": backlog}
    async with sandbox_queue(servers) as queue:
        out["fill"] = await fill(queue, backlog)
        print(f"  filled {backlog:,} jobs in {out['fill']['seconds']:.1f}s", flush=True)
        out["rebuild_index_lost"] = await build_index(queue, backlog)
        print(f"  run_once, index lost (rebuild): {out['rebuild_index_lost']['seconds']:.2f}s",
              flush=True)
        if reconcile:
            out["run_once_index_complete"] = await timed_run_once(queue)
            print(f"  run_once, index complete: {out['run_once_index_complete']['seconds']:.2f}s",
                  flush=True)
            keys = queue.index.keys_for(JOB_TYPE)
            usage = await queue.redis.memory_usage(keys.ready, samples=0)
            out["ready_set_bytes_per_job"] = usage / backlog
        if drain_jobs:
            out["drain"] = await drain(
                queue.settings, drain_jobs, concurrency=concurrency, timeout=timeout,
                run_dir=run_dir, label=f"S4-{backlog}",
            )
            d = out["drain"]
            print(f"  drained {d['completed']:,}/{drain_jobs:,} of {backlog:,}: "
                  f"{d.get('jobs_per_s', 0):,.0f} jobs/s [{d['status']}]", flush=True)
    return out
