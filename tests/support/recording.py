"""Handlers for tests that record every execution, so tests can count runs per job.

Used in-process (``Recorder``) and by worker subprocesses (``register`` below, selected with
``hybridq worker --handlers tests.support.recording``), which append one line per
execution to the file named by HYBRIDQ_TEST_RECORD with a single O_APPEND write.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from queue_core import JobRunnerService

RECORD_ENV = "HYBRIDQ_TEST_RECORD"
JOB_TYPE = "recorded"


def append_line(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def read_records(path: Path) -> list[list[str]]:
    """One [job_id, attempt, pid, time] per execution."""
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line]


def read_counts(path: Path) -> Counter[str]:
    """Executions per job id."""
    return Counter(record[0] for record in read_records(path))


async def handle_recorded(job: dict[str, Any]) -> dict[str, Any]:
    sleep = job["input"].get("sleep", 0)
    append_line(
        os.environ[RECORD_ENV], f"{job['id']} {job['attempts']} {os.getpid()} {time.time()}"
    )
    if sleep:
        await asyncio.sleep(sleep)
    return {"n": job["input"].get("n")}


def register(runner: JobRunnerService) -> None:
    runner.register_handler(JOB_TYPE, handle_recorded)
