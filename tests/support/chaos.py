"""One chaos run for the failure tests (tests/failure/): a backlog of recorded jobs drained by
worker subprocesses and the reconciler loop while the test injects faults, then judged."""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from queue_core import Queue, Settings

from .fleet import ReconcileTotals, WorkerFleet, enqueue_recorded, reconciler_running, short_lease
from .monitor import JobsMonitor
from .recording import JOB_TYPE
from .verdict import DrainReport, drain_report


@dataclass
class Drain:
    """A backlog being drained by worker subprocesses while the test injects faults."""

    queue: Queue
    settings: Settings  # the short-lease settings the workers and the reconciler use
    record: Path
    monitor: JobsMonitor
    fleet: WorkerFleet
    reconciler: ReconcileTotals
    acknowledged: list[str]
    started: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)  # copied into the report

    async def settle(
        self,
        scenario: str,
        *,
        timeout: float = 150,
        forgiven_pids: Iterable[int] = (),
        forgiven_until: float = 0.0,
    ) -> DrainReport:
        """Wait until nothing is queued or running (or the drain is stuck), then judge."""
        settled = await self.monitor.wait_settled(timeout)
        report = await drain_report(
            scenario,
            self.monitor,
            self.record,
            acknowledged=self.acknowledged,
            drain_seconds=time.monotonic() - self.started,
            settled=settled,
            forgiven_pids=forgiven_pids,
            forgiven_until=forgiven_until,
            fleet=self.fleet,
        )
        report.notes.update(self.notes, reconciler=asdict(self.reconciler))
        return report

    async def reach(self, fraction: float) -> bool:
        """Until that fraction of the initial backlog succeeded. False when the drain is
        stuck (then the test injects nothing more and goes to the verdict, which says why)."""
        reached = await self.monitor.wait_for_succeeded(int(len(self.acknowledged) * fraction))
        if not reached:
            self.notes["stuck_before"] = fraction
        return reached

    async def running_on(self, proc: subprocess.Popen[bytes]) -> int | None:
        """Jobs the worker process holds right now (its worker id is host:pid:random)."""
        rows = await self.monitor.fetch(
            "SELECT count(*) AS n FROM jobs WHERE status = 'running' AND lease_owner LIKE $1",
            f"%:{proc.pid}:%",
        )
        return None if rows is None else int(rows[0]["n"])


@asynccontextmanager
async def draining(
    queue: Queue,
    log_dir: Path,
    *,
    jobs: int,
    sleep: float,
    workers: int = 3,
    concurrency: int = 10,
    **worker_env_extra: str,
) -> AsyncIterator[Drain]:
    """Enqueue ``jobs`` recorded jobs, mark their index complete (workers claim through
    Redis), start the reconciler loop and ``workers`` worker processes. On exit the workers
    get SIGTERM and the reconciler stops."""
    settings = short_lease(queue.settings)
    acknowledged = await enqueue_recorded(queue, jobs, sleep=sleep)
    rebuilt = await queue.reconciler().rebuild_index([JOB_TYPE])
    assert not rebuilt.skipped
    record = log_dir / "executions.log"
    monitor = JobsMonitor(settings)
    try:
        async with (
            reconciler_running(queue, settings) as totals,
            WorkerFleet(
                settings, record, log_dir, concurrency=concurrency, **worker_env_extra
            ) as fleet,
        ):
            drain = Drain(queue, settings, record, monitor, fleet, totals, acknowledged)
            fleet.start(workers)
            drain.started = time.monotonic()
            yield drain
    finally:
        await monitor.close()
