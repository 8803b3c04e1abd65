"""What runs in a failure test besides its faults: recorded jobs with short leases, the
reconciler loop in the test process, and ``hybridq worker`` subprocesses to kill and replace."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from queue_core import Queue, Settings
from queue_core.index import IndexRepair
from queue_core.maintenance.reconciler import Reconciler, ReconcileResult

from .recording import JOB_TYPE
from .workers import start_worker, worker_env

LEASE_SECONDS = 2.0
"""Short leases, so a killed worker's jobs are rescued within seconds."""
RECONCILE_EVERY_SECONDS = 0.5


def short_lease(settings: Settings) -> Settings:
    return settings.model_copy(update={"lease_seconds": LEASE_SECONDS})


async def enqueue_recorded(queue: Queue, count: int, *, sleep: float, start: int = 0) -> list[str]:
    """``count`` jobs of the recording handler, in batches; returns their ids (each one was
    acknowledged: its INSERT committed)."""
    ids: list[str] = []
    for first in range(start, start + count, 5000):
        last = min(first + 5000, start + count)
        jobs = await queue.job_service.create_many(
            [{"job_type": JOB_TYPE, "input": {"n": n, "sleep": sleep}} for n in range(first, last)]
        )
        ids += [j["id"] for j in jobs]
    return ids


@dataclass
class ReconcileTotals:
    """What the test's reconciler loop did, summed over its runs."""

    runs: int = 0
    failed_runs: int = 0  # raised (a server down): the loop goes on, like run_forever's
    leases_rescued: int = 0
    leases_failed: int = 0
    reindexed: int = 0
    indexes_rebuilt: int = 0

    def add(self, result: ReconcileResult) -> None:
        self.runs += 1
        self.leases_rescued += result.leases_rescued
        self.leases_failed += result.leases_failed
        self.reindexed += result.reindexed
        self.indexes_rebuilt += len(result.indexes_rebuilt)


@asynccontextmanager
async def reconciler_running(queue: Queue, settings: Settings) -> AsyncIterator[ReconcileTotals]:
    """The reconciler loop in this process, with ``settings``' (short) lease: it rescues the
    leases of killed or cut-off workers and re-indexes what Redis lost. The loop is
    Reconciler.run_forever's (run_once every 0.5 s +-10%, a failed run does not end it)
    without its JSON line per run, and it sums the results for the verdict."""
    reconciler = Reconciler(queue.store, queue.index, IndexRepair(queue.index), settings)
    totals = ReconcileTotals()
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            try:
                totals.add(await reconciler.run_once())
            except Exception:  # e.g. BackendUnavailable, or a raw driver error mid-outage
                totals.failed_runs += 1
            delay = RECONCILE_EVERY_SECONDS * random.uniform(0.9, 1.1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    task = asyncio.create_task(loop())
    try:
        yield totals
    finally:
        stop.set()
        done, _ = await asyncio.wait({task}, timeout=30)
        if not done:  # a run stuck on a dead connection: do not hang the test on it
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class WorkerFleet:
    """``hybridq worker`` subprocesses running a handlers module (tests.support.recording by
    default), one log file each.
    Use as ``async with``: every worker still alive at the end gets SIGTERM (then SIGKILL)."""

    def __init__(
        self,
        settings: Settings,
        record: Path,
        log_dir: Path,
        *,
        concurrency: int,
        handlers: str = "tests.support.recording",
        **extra_env: str,
    ) -> None:
        extra_env.setdefault("HYBRIDQ_SHUTDOWN_GRACE_SECONDS", "2")
        self.handlers = handlers
        self.env = worker_env(settings, record, **extra_env)
        self.concurrency = concurrency
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}  # pid -> its log file
        self.killed: set[int] = set()  # pids of workers that got SIGKILL
        self.stopped: set[int] = set()  # pids of workers that got SIGTERM from the test

    def start(
        self, count: int = 1, *, concurrency: int | None = None
    ) -> list[subprocess.Popen[bytes]]:
        started = []
        for _ in range(count):
            log = self.log_dir / f"worker-{len(self.procs)}.log"
            proc = start_worker(self.env, concurrency or self.concurrency, log, self.handlers)
            self.procs.append(proc)
            self.logs[proc.pid] = log
            started.append(proc)
        return started

    @property
    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def kill9(self, proc: subprocess.Popen[bytes]) -> None:
        self.killed.add(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def terminate(self, proc: subprocess.Popen[bytes]) -> None:
        self.stopped.add(proc.pid)
        proc.send_signal(signal.SIGTERM)

    def unexpected_exits(self) -> list[tuple[int, int | None]]:
        """(pid, exit code) of workers that exited without the test killing or stopping them."""
        return [
            (p.pid, p.returncode)
            for p in self.procs
            if p.poll() is not None and p.pid not in self.killed | self.stopped
        ]

    def log_text(self, pid: int | None = None) -> str:
        paths = [self.logs[pid]] if pid is not None else sorted(self.logs.values())
        return "".join(p.read_text(errors="replace") for p in paths if p.exists())

    def log_summary(self) -> dict[str, int]:
        """How often the interesting events appear in the workers' logs."""
        text = self.log_text()
        return {name: text.count(needle) for name, needle in LOG_EVENTS.items()}

    def _stop_all(self) -> None:
        for p in self.alive:
            self.terminate(p)
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    async def __aenter__(self) -> WorkerFleet:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self._stop_all)


LOG_EVENTS = {
    "lease_lost_outcome": "lease lost: outcome discarded",
    "lease_lost_cancelled": "lease lost: handler cancelled",
    "to_postgres": "claiming straight from postgres",
    "back_to_redis": "claiming through redis again",
    "released": "released unfinished jobs",
    "tracebacks": "Traceback (most recent call last)",
}
