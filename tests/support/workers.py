"""Worker subprocesses for multi-process and failure tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from queue_core import Settings
from queue_core.store import PgStore, open_lease_store

from .recording import RECORD_ENV

REPO = Path(__file__).resolve().parents[2]


def lease_store_for(
    settings: Settings, wrap: Callable[[PgStore], Any] | None = None
) -> Callable[[], Awaitable[Any]]:
    """A JobRunnerService's ``lease_store`` on ``settings``' database; ``wrap`` puts a test
    double around the store the lease keeper opens in its own thread."""

    async def open_store() -> Any:
        store = await open_lease_store(settings.database_url, settings.db_schema)
        return wrap(store) if wrap is not None else store

    return open_store


def worker_env(settings: Settings, record_file: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("HYBRIDQ_HANDLERS_MODULE", None)  # each test names its handlers module itself
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        HYBRIDQ_DB_SCHEMA=settings.db_schema or "",
        HYBRIDQ_NAMESPACE=settings.namespace,
        HYBRIDQ_LEASE_SECONDS=str(settings.lease_seconds),
        HYBRIDQ_RETRY_BASE_SECONDS=str(settings.retry_base_seconds),
        HYBRIDQ_IDLE_POLL_SECONDS=str(settings.idle_poll_seconds),
        PYTHONPATH=str(REPO),
        **{RECORD_ENV: str(record_file)},
    )
    env.update(extra)
    return env


def start_worker(
    env: dict[str, str],
    concurrency: int,
    log_path: Path,
    handlers: str = "tests.support.recording",
) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "queue_core",
                "worker",
                "--handlers",
                handlers,
                "--concurrency",
                str(concurrency),
            ],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@contextmanager
def worker_processes(
    settings: Settings, record_file: Path, count: int, concurrency: int, log_dir: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    env = worker_env(settings, record_file)
    procs = [start_worker(env, concurrency, log_dir / f"worker-{i}.log") for i in range(count)]
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
