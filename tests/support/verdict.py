"""The verdict of a drain: every acknowledged job is in Postgres and succeeded, every job ran (its
final attempt included), and every job that ran twice has an explanation (a re-claimed attempt,
a killed or stopped worker, an attempt in flight when the database crashed); else it fails."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .fleet import WorkerFleet
from .monitor import JobsMonitor

KNOWN_DRIVER_ERRORS = ("InternalClientError", "DeadlockDetectedError")
"""Raw asyncpg errors that once escaped PgStore untranslated and ended a worker's loop
(tests/failure/test_database_errors.py); a worker log naming one is reported."""
STUCK_AFTER = "10 seconds"
"""A running job started longer ago than this, whose lease is still being renewed, is held
by a worker that no longer writes outcomes (handlers here run 2 s at most)."""


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
