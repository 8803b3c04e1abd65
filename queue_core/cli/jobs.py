"""The single-job commands of ``hybridq``: get, list, cancel and retry ID.

parser.py declares their arguments (a malformed id is refused there: exit 2); main.py calls
one function here each. A job is printed as JSON (the shape of the API's job), a list as a
table or, with ``--json``, as a JSON array. JobNotFound and JobStateConflict propagate:
main.py prints them as one line and exits 1.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rich.table import Table
from rich.text import Text

from queue_core.connect import connect
from queue_core.models import Job
from queue_core.settings import Settings

from .ops import stdout_console

ERROR_CHARS_SHOWN = 60
"""A job's last_error in the list table: its first line, cut to this many characters."""


def job_json(job: Job) -> str:
    """One job as indented JSON; times in ISO 8601 with their offset."""
    return json.dumps(job, default=_json_default, indent=2)


async def show_job(settings: Settings, job_id: str) -> int:
    async with connect(settings) as queue:
        job = await queue.job_service.get(job_id)
    print(job_json(job))
    return 0


async def cancel_job(settings: Settings, job_id: str) -> int:
    """Queued or running -> cancelled (a running handler stops at its worker's next
    heartbeat); prints the job. A finished job is a JobStateConflict."""
    async with connect(settings) as queue:
        job = await queue.job_service.cancel(job_id)
    print(job_json(job))
    return 0


async def retry_job(settings: Settings, job_id: str) -> int:
    """Failed or cancelled -> queued now, with a fresh allowance of retries; prints the job.
    Any other status is a JobStateConflict."""
    async with connect(settings) as queue:
        job = await queue.job_service.retry(job_id)
    print(job_json(job))
    return 0


async def list_jobs(
    settings: Settings,
    *,
    status: str | None,
    job_type: str | None,
    user_id: str | None,
    limit: int,
    as_json: bool,
) -> int:
    """The newest ``limit`` jobs (of ``status``, ``job_type``, ``user_id`` when given), as
    a table or a JSON array."""
    async with connect(settings) as queue:
        jobs = await queue.job_service.list_jobs(
            user_id=user_id, status=status, job_type=job_type, limit=limit
        )
    if as_json:
        print(json.dumps(jobs, default=_json_default, indent=2))
    else:
        stdout_console().print(_jobs_table(jobs, limit))
    return 0


def _jobs_table(jobs: list[Job], limit: int) -> Table:
    more = f"; --limit {limit} reached, there may be more" if len(jobs) == limit else ""
    table = Table(
        title="hybridq jobs, newest first",
        title_justify="left",
        caption=f"{len(jobs)} job{'' if len(jobs) == 1 else 's'}{more}",
    )
    for column in ("id", "job type", "status", "attempts", "user", "created", "last error"):
        table.add_column(column, justify="right" if column == "attempts" else "left")
    for job in jobs:
        error = (job["last_error"] or "").split("\n", 1)[0][:ERROR_CHARS_SHOWN]
        table.add_row(
            job["id"],
            Text(job["job_type"]),  # Text: never parsed as rich markup
            job["status"],
            str(job["attempts"]),
            Text(job["user_id"] or "-"),
            job["created_at"].isoformat(timespec="seconds"),
            Text(error or "-"),
        )
    return table


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")
