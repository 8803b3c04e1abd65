"""Fault injection for the failure tests (tests/failure/).

Three parts:
- control of the machine's PostgreSQL and Redis (restart, stop, start, terminate backends),
  always waiting until the server answers again;
- a fleet of ``hybridq worker`` subprocesses that can be SIGKILLed and replaced;
- the verdict of a drain: every acknowledged job is in Postgres and succeeded, every job
  ran (its final attempt included), and every job that ran twice has an explanation: a
  re-claimed attempt, a worker that was killed or stopped, or an attempt in flight when the
  database crashed. Anything else fails, with a summary of what was found.

The server controls act on the local servers the failure tests run against (PostgreSQL 15
cluster "main" on 5432, Redis on 6379). They are blocking: call them through
``asyncio.to_thread`` so the test's event loop (its reconciler) keeps running meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from queue_core import Queue, Settings
from queue_core.dev.devservers import port_open
from queue_core.index import IndexRepair
from queue_core.maintenance.reconciler import Reconciler, ReconcileResult

from .recording import JOB_TYPE
from .workers import start_worker, worker_env

PG_HOST, PG_PORT = "127.0.0.1", 5432
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
SERVER_WAIT_SECONDS = 60.0
"""How long a restarted server may take to answer before the helper gives up."""

LEASE_SECONDS = 2.0
"""Short leases, so a killed worker's jobs are rescued within seconds."""
RECONCILE_EVERY_SECONDS = 0.5
STALL_SECONDS = 30.0
"""A drain whose job counts do not move for this long is stuck: rescues take a lease (2 s)
plus a backoff (at most 1 s with the test settings), so a live drain never pauses that long."""

MONITOR_APPLICATION_NAME = "hybridq-chaos-monitor"
"""The test's own observer connection; never matched by the backend-termination chaos, which
targets application_name 'hybridq' (every pool hybridq opens)."""


# --- the servers -------------------------------------------------------------------------


def _run(cmd: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def pg_cluster_version() -> str:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions:
        raise RuntimeError("no PostgreSQL cluster under /etc/postgresql")
    return versions[-1]


def pg_ctlcluster(action: str, *options: str) -> subprocess.CompletedProcess[str]:
    return _run(
        [
            "pg_ctlcluster",
            "--skip-systemctl-redirect",
            pg_cluster_version(),
            "main",
            action,
            *options,
        ],
        timeout=120,
    )


def pg_ready() -> bool:
    return _run(["pg_isready", "-q", "-h", PG_HOST, "-p", str(PG_PORT)], timeout=10).returncode == 0


def redis_ready() -> bool:
    try:
        out = _run(["redis-cli", "-h", REDIS_HOST, "-p", str(REDIS_PORT), "ping"], timeout=10)
    except subprocess.TimeoutExpired:
        return False
    return out.stdout.strip() == "PONG"


def _wait(condition: Any, what: str, timeout: float = SERVER_WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not reached within {timeout}s")
        time.sleep(0.1)


def restart_postgres() -> float:
    """Restart the cluster (fast shutdown: every connection is cut); returns the seconds it
    took until the server accepted connections again."""
    started = time.monotonic()
    result = pg_ctlcluster("restart")
    if result.returncode != 0:
        raise RuntimeError(f"pg_ctlcluster restart failed: {result.stderr or result.stdout}")
    _wait(pg_ready, "postgres ready")
    return time.monotonic() - started


def crash_postgres() -> tuple[float, float]:
    """Crash the cluster (immediate shutdown: no checkpoint, WAL still in the server's
    buffers is lost, as in a power cut of the database alone) and start it again. Returns
    when the server was down for sure (a time.time()) and the seconds until it accepted
    connections again (after crash recovery)."""
    started = time.monotonic()
    result = pg_ctlcluster("stop", "-m", "immediate")
    if result.returncode != 0:
        raise RuntimeError(f"pg_ctlcluster stop -m immediate failed: {result.stderr}")
    down_at = time.time()
    result = pg_ctlcluster("start")
    if result.returncode != 0:
        raise RuntimeError(f"pg_ctlcluster start failed: {result.stderr or result.stdout}")
    _wait(pg_ready, "postgres ready")
    return down_at, time.monotonic() - started


def stop_redis() -> None:
    """SHUTDOWN NOSAVE: the server exits and, without persistence, forgets everything."""
    _run(["redis-cli", "-h", REDIS_HOST, "-p", str(REDIS_PORT), "shutdown", "nosave"])
    _wait(lambda: not port_open(REDIS_HOST, REDIS_PORT), "redis stopped")


def start_redis() -> None:
    if redis_ready():
        return
    result = _run(
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "-::1",
            "--port",
            str(REDIS_PORT),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            "/var/lib/redis",
            "--logfile",
            "/var/log/redis/ci.log",
        ]
    )
    if result.returncode != 0:
        raise RuntimeError(f"redis-server did not start: {result.stderr or result.stdout}")
    _wait(redis_ready, "redis ready")


def ensure_servers_up() -> None:
    """Bring back whichever server a test left down (a failed test included)."""
    if not pg_ready():
        result = pg_ctlcluster("start")
        if result.returncode != 0 and not pg_ready():
            pg_ctlcluster("restart")
        _wait(pg_ready, "postgres ready")
    if not redis_ready():
        start_redis()


async def terminate_hybridq_backends(database_url: str) -> int:
    """pg_terminate_backend every connection opened by hybridq (application_name 'hybridq'),
    from a plain connection of our own; returns how many were terminated."""
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'hybridq' AND pid <> pg_backend_pid()"
            )
        )
    finally:
        await conn.close()


# --- the test process's view of the jobs table --------------------------------------------


class JobsMonitor:
    """Reads the jobs table on its own connection and survives the chaos: a failed read
    (server restarting, connection terminated) returns None and reconnects next time."""

    def __init__(self, settings: Settings) -> None:
        self._url = settings.database_url
        self._schema = settings.db_schema
        self._conn: asyncpg.Connection | None = None

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            server_settings = {"application_name": MONITOR_APPLICATION_NAME}
            if self._schema:
                server_settings["search_path"] = self._schema
            self._conn = await asyncpg.connect(
                self._url, timeout=5, server_settings=server_settings
            )
        return self._conn

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record] | None:
        try:
            conn = await self._connection()
            return await asyncio.wait_for(conn.fetch(query, *args), 10)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
            await self._drop()
            return None

    async def fetch_retrying(self, query: str, *args: Any, timeout: float = 60) -> list[Any]:
        deadline = time.monotonic() + timeout
        while (rows := await self.fetch(query, *args)) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"postgres unreadable for {timeout}s")
            await asyncio.sleep(0.2)
        return rows

    async def status_counts(self) -> Counter[str] | None:
        rows = await self.fetch("SELECT status, count(*) AS n FROM jobs GROUP BY status")
        return None if rows is None else Counter({r["status"]: r["n"] for r in rows})

    async def wait_for_succeeded(
        self, at_least: int, timeout: float = 120, stall_seconds: float = STALL_SECONDS
    ) -> bool:
        """Until at least ``at_least`` jobs succeeded: the moment to inject the next fault.
        False when the drain is stuck or too slow: inject nothing more, go to the verdict."""
        deadline = time.monotonic() + timeout
        last: Counter[str] | None = None
        moved = time.monotonic()
        while time.monotonic() < deadline:
            counts = await self.status_counts()
            if counts is not None:
                if counts["succeeded"] >= at_least:
                    return True
                if counts != last:
                    last, moved = counts, time.monotonic()
            if time.monotonic() - moved > stall_seconds:
                return False
            await asyncio.sleep(0.05)
        return False

    async def wait_settled(self, timeout: float, stall_seconds: float = STALL_SECONDS) -> bool:
        """Until no job is queued or running. False on timeout, or as soon as the counts
        have not moved for ``stall_seconds`` (stuck: no point waiting for the timeout); the
        verdict then says why."""
        deadline = time.monotonic() + timeout
        last: Counter[str] | None = None
        moved = time.monotonic()
        while time.monotonic() < deadline:
            counts = await self.status_counts()
            if counts is not None:
                if counts["queued"] + counts["running"] == 0:
                    return True
                if counts != last:
                    last, moved = counts, time.monotonic()
            if time.monotonic() - moved > stall_seconds:
                return False
            await asyncio.sleep(0.2)
        return False

    async def _drop(self) -> None:
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None

    async def close(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            try:
                await asyncio.wait_for(self._conn.close(), 5)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
                self._conn.terminate()
        self._conn = None


# --- jobs, reconciler, workers -----------------------------------------------------------


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
    """``hybridq worker`` subprocesses running tests.support.recording, one log file each.
    Use as ``async with``: every worker still alive at the end gets SIGTERM (then SIGKILL)."""

    def __init__(
        self, settings: Settings, record: Path, log_dir: Path, *, concurrency: int, **extra_env: str
    ) -> None:
        extra_env.setdefault("HYBRIDQ_SHUTDOWN_GRACE_SECONDS", "2")
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
            proc = start_worker(self.env, concurrency or self.concurrency, log)
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

KNOWN_DRIVER_ERRORS = ("InternalClientError", "DeadlockDetectedError")
"""Raw asyncpg errors that once escaped PgStore untranslated and ended a worker's loop
(tests/failure/test_database_errors.py); a worker log naming one is reported."""
STUCK_AFTER = "10 seconds"
"""A running job started longer ago than this, whose lease is still being renewed, is held
by a worker that no longer writes outcomes (handlers here run 2 s at most)."""


# --- the verdict -------------------------------------------------------------------------


@dataclass(frozen=True)
class Execution:
    job_id: str
    attempt: int
    pid: int
    at: float


def read_executions(path: Path) -> list[Execution]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line:
            job_id, attempt, pid, at = line.split()
            out.append(Execution(job_id, int(attempt), int(pid), float(at)))
    return out


@dataclass
class DrainReport:
    scenario: str
    jobs: int
    executions: int
    statuses: Counter[str]
    drain_seconds: float
    settled: bool
    not_acknowledged: list[str]  # ids create() returned that Postgres does not have
    not_succeeded: list[tuple[str, str, int, str]]  # id, status, attempts, last_error
    never_ran: list[str]  # ids with no recorded execution
    strangers: list[str]  # executions of ids that are not in the table
    final_attempt_not_run: list[str]  # succeeded, yet no execution of its final attempt
    worker_exits: list[tuple[int, int | None]] = field(default_factory=list)  # unexpected
    crashed_on_driver_error: dict[int, str] = field(default_factory=dict)  # pid -> error
    stuck_running: dict[str, int] = field(default_factory=dict)  # lease owner -> jobs
    duplicates: dict[str, list[Execution]] = field(default_factory=dict)
    unexplained: dict[str, list[Execution]] = field(default_factory=dict)
    dup_after_kill: int = 0  # duplicates whose earlier run was on a forgiven worker
    dup_reclaimed: int = 0  # duplicates whose later run is a higher attempt
    dup_same_worker: int = 0  # duplicates run twice by the same worker process
    events: dict[str, int] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            self.settled
            and not self.not_acknowledged
            and not self.not_succeeded
            and not self.never_ran
            and not self.strangers
            and not self.final_attempt_not_run
            and not self.unexplained
            and not self.worker_exits
            and not self.stuck_running
        )

    def summary(self) -> str:
        lines = [
            f"scenario {self.scenario}: jobs={self.jobs} executions={self.executions} "
            f"duplicates={len(self.duplicates)} (after kill/release/crash {self.dup_after_kill}, "
            f"re-claimed attempt {self.dup_reclaimed}, same worker {self.dup_same_worker}, "
            f"unexplained {len(self.unexplained)}) "
            f"drain={self.drain_seconds:.1f}s settled={self.settled}",
            f"  statuses: {dict(self.statuses)}",
            f"  worker log events: {self.events}",
        ]
        if self.notes:
            lines.append(f"  notes: {self.notes}")
        problems: list[tuple[str, list[Any]]] = [
            ("not acknowledged", self.not_acknowledged),
            ("not succeeded", self.not_succeeded),
            ("never ran", self.never_ran),
            ("strangers", self.strangers),
            ("final attempt not run", self.final_attempt_not_run),
            ("workers exited on their own (pid, code)", self.worker_exits),
            ("workers crashed on a driver error", list(self.crashed_on_driver_error.items())),
            ("jobs stuck on a live worker", list(self.stuck_running.items())),
        ]
        for name, items in problems:
            if items:
                lines.append(f"  {name}: {len(items)}, e.g. {items[:5]}")
        for job_id, runs in list(self.unexplained.items())[:5]:
            lines.append(f"  unexplained duplicate {job_id}: {runs}")
        return "\n".join(lines)


async def drain_report(
    scenario: str,
    monitor: JobsMonitor,
    record: Path,
    *,
    acknowledged: Iterable[str],
    drain_seconds: float,
    settled: bool,
    forgiven_pids: Iterable[int] = (),
    forgiven_until: float = 0.0,
    fleet: WorkerFleet | None = None,
) -> DrainReport:
    """Compare the jobs table with the execution record.

    A job that ran more than once is explained when, between each run and the next, either
    the attempt number grew (the earlier attempt's lease was rescued and the job claimed
    again), or the earlier run was on a worker in ``forgiven_pids`` (killed, or stopped and
    its attempt released, so it never finished), or it started before ``forgiven_until``
    (a time.time(): it was in flight when the database crashed and lost its claim)."""
    rows = await monitor.fetch_retrying(
        "SELECT id::text AS id, status, attempts, last_error FROM jobs"
    )
    stuck = await monitor.fetch_retrying(
        "SELECT lease_owner, count(*) AS n FROM jobs WHERE status = 'running'"
        f" AND started_at < now() - interval '{STUCK_AFTER}' AND lease_expires_at > now()"
        " GROUP BY lease_owner"
    )
    runs = read_executions(record)
    forgiven = set(forgiven_pids)
    by_job: dict[str, list[Execution]] = defaultdict(list)
    for r in runs:
        by_job[r.job_id].append(r)
    table = {r["id"]: r for r in rows}
    exits = fleet.unexpected_exits() if fleet else []
    report = DrainReport(
        scenario=scenario,
        jobs=len(rows),
        executions=len(runs),
        statuses=Counter(r["status"] for r in rows),
        drain_seconds=drain_seconds,
        settled=settled,
        not_acknowledged=sorted(set(acknowledged) - table.keys()),
        not_succeeded=[
            (r["id"], r["status"], r["attempts"], (r["last_error"] or "")[:200])
            for r in rows
            if r["status"] != "succeeded"
        ],
        never_ran=sorted(table.keys() - by_job.keys()),
        strangers=sorted(by_job.keys() - table.keys()),
        final_attempt_not_run=sorted(
            r["id"]
            for r in rows
            if r["status"] == "succeeded"
            and r["attempts"] not in {e.attempt for e in by_job.get(r["id"], [])}
        ),
        worker_exits=exits,
        crashed_on_driver_error={
            pid: error
            for pid, _ in exits
            for error in KNOWN_DRIVER_ERRORS
            if fleet is not None and error in fleet.log_text(pid)
        },
        stuck_running={r["lease_owner"]: r["n"] for r in stuck},
        events=fleet.log_summary() if fleet else {},
    )
    for job_id, job_runs in by_job.items():
        if len(job_runs) < 2:
            continue
        job_runs.sort(key=lambda e: e.at)
        report.duplicates[job_id] = job_runs
        pairs = list(zip(job_runs, job_runs[1:], strict=False))
        if any(a.pid in forgiven or a.at < forgiven_until for a, _ in pairs):
            report.dup_after_kill += 1
        if any(b.attempt > a.attempt for a, b in pairs):
            report.dup_reclaimed += 1
        if any(a.pid == b.pid for a, b in pairs):
            report.dup_same_worker += 1
        if not all(
            b.attempt > a.attempt or a.pid in forgiven or a.at < forgiven_until for a, b in pairs
        ):
            report.unexplained[job_id] = job_runs
    return report


def verdict(report: DrainReport) -> None:
    """Pass, or fail with the summary."""
    print(report.summary())
    if not report.ok:
        raise AssertionError(report.summary())


# --- one chaos run -----------------------------------------------------------------------


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
