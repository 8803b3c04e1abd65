"""hybridq as a peer in the shared harness (../shared/bench-peers, see its adapters/base.py).

Runs inside the harness's driver process (in .bench-venv, started by bench/peers.py through
bench/harness_main.py), so it may import the harness's ``adapters`` and ``benchlib``.

- reset(): a fresh schema and Redis namespace, migrated, its index marked complete the way a
  deployment's reconciler leaves it; the previous ones are dropped.
- enqueue_one / enqueue_many: JobService.create / create_many (1000 per call).
- start_workers(n, c): n processes of ``python -P -m queue_core worker --handlers
  bench.noop_handlers --concurrency c``. ``-P`` and PYTHONPATH = repository, harness: the
  harness starts workers in its own folder, whose bench.py would otherwise shadow our
  ``bench`` package; the harness folder stays on the path for ``benchlib``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from contextlib import AsyncExitStack
from typing import Any

from adapters.base import HERE, Adapter, ProcessGroup, pkg_version

from queue_core import Queue, Settings, connect

from .noop_handlers import JOB_TYPE
from .sandbox import (
    OUTAGES,
    REPO,
    Servers,
    create_schema,
    remove_sandbox,
    sandbox_name,
    scenario_settings,
)


class HybridqAdapter(Adapter):
    name = "hybridq"
    has_batch_api = True  # create_many: one INSERT ... unnest + one Redis pipeline
    batch_size = 1000

    def __init__(self) -> None:
        self.workers = ProcessGroup(self.name)
        self.servers = Servers.from_env()
        self.queue: Queue | None = None
        self._stack: AsyncExitStack | None = None
        self._settings: Settings | None = None

    def versions(self) -> dict[str, str]:
        return {name: pkg_version(name)
                for name in ("hybridq", "asyncpg", "redis", "hiredis", "uvloop")}

    def settings(self) -> dict[str, Any]:
        s = scenario_settings(self.servers, "x")
        return {
            "backend": "PostgreSQL jobs table (fresh schema per scenario) + Redis ready-index "
            "(fresh namespace)",
            "worker": "python -P -m queue_core worker --handlers bench.noop_handlers "
            "--concurrency C",
            "wakeup": "idle worker blocks in BZPOPMIN on the ready set (up to 1 s), then "
            "re-checks with a full claim",
            "prefetch": "claims up to 2x concurrency ahead while jobs average under "
            f"{s.prefetch_max_job_ms:g} ms",
            "claim": f"Lua pop of up to {s.claim_batch_max} ids + one conditional UPDATE",
            "outcomes": f"batched: flush every {s.flush_interval_ms:g} ms or "
            f"{s.flush_batch_max} outcomes",
            "enqueue": "JobService.create; batch: create_many (1000 per call: one INSERT, "
            "one Redis pipeline)",
            "pool": f"{s.pool_min_size}..{s.pool_max_size} connections per process",
        }

    async def setup(self) -> None:
        pass

    async def teardown(self) -> None:
        await self._drop_current()

    async def reset(self) -> None:
        await self._drop_current()
        name = sandbox_name("hqpeer")
        await create_schema(self.servers.database_url, name)
        self._settings = scenario_settings(self.servers, name)
        self._stack = AsyncExitStack()
        self.queue = await self._stack.enter_async_context(
            connect(self._settings, handlers="bench.noop_handlers")  # the workers' module
        )
        await self.queue.reconciler().rebuild_index([JOB_TYPE])

    async def _drop_current(self) -> None:
        if self._stack is not None:
            stack, self._stack, self.queue = self._stack, None, None
            with contextlib.suppress(*OUTAGES):  # the schema still goes, below
                await stack.aclose()
        if self._settings is not None:
            name, self._settings = self._settings.namespace, None
            await remove_sandbox(self.servers, name)

    async def enqueue_one(self, i: int, t: float) -> None:
        assert self.queue is not None
        await self.queue.job_service.create(job_type=JOB_TYPE, input={"i": i, "t": t})

    async def enqueue_many(self, items: Any) -> None:
        assert self.queue is not None
        await self.queue.job_service.create_many(
            [{"job_type": JOB_TYPE, "input": {"i": i, "t": t}} for i, t in items]
        )

    async def count_queued(self) -> int | None:
        assert self.queue is not None
        return int(await self.queue.pool.fetchval(
            "SELECT count(*) FROM jobs WHERE status = 'queued'"))

    def start_workers(self, n_procs: int, concurrency: int) -> None:
        assert self._settings is not None
        s = self._settings
        cmd = [sys.executable, "-P", "-m", "queue_core", "worker",
               "--handlers", "bench.noop_handlers", "--concurrency", str(concurrency)]
        path = [str(REPO), str(HERE), os.environ.get("PYTHONPATH", "")]
        env = {
            "DATABASE_URL": s.database_url,
            "REDIS_URL": s.redis_url,
            "HYBRIDQ_DB_SCHEMA": s.db_schema or "",
            "HYBRIDQ_NAMESPACE": s.namespace,
            "PYTHONPATH": os.pathsep.join(p for p in path if p),
        }
        self.workers.start([cmd for _ in range(n_procs)], env=env)

    def stop_workers(self) -> None:
        self.workers.stop()

    def workers_alive(self) -> bool | None:
        return self.workers.alive()
