"""S8: create() from many concurrent callers, and the raw INSERT+COMMIT rate that S1's
one-by-one enqueue is compared with.

Both count only what completes inside a fixed window that starts after a short warm-up
(connections opened, statements prepared).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import asyncpg

from queue_core.ids import uuid7

from .noop_handlers import JOB_TYPE
from .sandbox import Servers, sandbox_queue

WARMUP_SECONDS = 1.0


async def concurrent_create(servers: Servers, callers: int, seconds: float) -> dict[str, Any]:
    """``callers`` tasks on one Queue (the default pool size), each awaiting create() in a
    loop; jobs/s over the measured window."""
    done = 0
    async with sandbox_queue(servers) as queue:
        measure_from = time.monotonic() + WARMUP_SECONDS
        stop_at = measure_from + seconds
        counted_at: dict[str, int] = {}

        async def caller(k: int) -> None:
            nonlocal done
            n = 0
            while time.monotonic() < stop_at:
                await queue.job_service.create(job_type=JOB_TYPE, input={"i": k, "t": n})
                n += 1
                done += 1

        async def mark() -> None:
            await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
            counted_at["start"] = done
            await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
            counted_at["stop"] = done

        await asyncio.gather(mark(), *(caller(k) for k in range(callers)))
        pool_max = queue.settings.pool_max_size
    jobs = counted_at["stop"] - counted_at["start"]
    return {
        "callers": callers, "seconds": seconds, "jobs": jobs, "jobs_per_s": jobs / seconds,
        "pool_max_size": pool_max,
    }


RAW_TABLE = "CREATE TABLE raw_insert (id uuid PRIMARY KEY, input jsonb NOT NULL)"
RAW_INSERT = "INSERT INTO raw_insert (id, input) VALUES ($1, $2::jsonb)"
RAW_JOBS_INSERT = (
    "INSERT INTO jobs (id, job_type, input, priority, max_retries, scheduled_for) "
    f"VALUES ($1, '{JOB_TYPE}', $2::jsonb, 0, 3, date_trunc('milliseconds', now()))"
)


async def raw_insert_commit(
    servers: Servers, seconds: float, *, into_jobs: bool = False
) -> dict[str, Any]:
    """The floor under one-by-one enqueue: one connection, one autocommit INSERT of a small row
    into a scratch two-column table at a time, sequentially (one fsync'd commit per row).
    ``into_jobs``: the same row into hybridq's jobs table instead (its constraints and
    indexes), without anything else create() does: the floor for this schema."""
    async with sandbox_queue(servers) as queue:
        conn = await asyncpg.connect(
            servers.database_url, server_settings={"search_path": queue.settings.db_schema or ""}
        )
        try:
            if not into_jobs:
                await conn.execute(RAW_TABLE)
            stmt = await conn.prepare(RAW_JOBS_INSERT if into_jobs else RAW_INSERT)
            measure_from = time.monotonic() + WARMUP_SECONDS
            stop_at = measure_from + seconds
            n = counted = 0
            while (now := time.monotonic()) < stop_at:
                await stmt.fetch(uuid7(), json.dumps({"i": n, "t": time.time()}))
                n += 1
                counted += now >= measure_from
        finally:
            await conn.close()
    return {"seconds": seconds, "rows": counted, "rows_per_s": counted / seconds}
