"""Rows of the jobs table as the engine's records (models.py)."""

from __future__ import annotations

import json
from datetime import UTC

import asyncpg

from queue_core.models import IndexEntry, Job, NewJob


def job_from_record(record: asyncpg.Record) -> Job:
    job = dict(record)
    job["id"] = str(job["id"])
    return job


def new_job_row(job: NewJob, inserted: asyncpg.Record) -> Job:
    """The row a fresh INSERT wrote, without reading it back: the client knows everything
    but what the server decided for the statement (``inserted``: its created_at, and the
    scheduled_for of jobs given none).
    test_create_stores_job_and_indexes_it_as_ready holds this equal to get_job()."""
    return {
        "id": str(job.id),
        "job_type": job.job_type,
        "user_id": job.user_id,
        "input": json.loads(job.input_json),
        "output": None,
        "status": "queued",
        "priority": job.priority,
        "attempts": 0,
        "max_retries": job.max_retries,
        "scheduled_for": (
            job.scheduled_for.astimezone(UTC) if job.scheduled_for else inserted["scheduled_for"]
        ),
        "created_at": inserted["created_at"],
        "started_at": None,
        "finished_at": None,
        "last_error": None,
        "error_detail": None,
        "progress": None,
        "progress_message": None,
        "progress_at": None,
        "lease_owner": None,
        "lease_expires_at": None,
        "idempotency_key": None,
        "request_fingerprint": None,
    }


def index_entry(record: asyncpg.Record) -> IndexEntry:
    """A queued job's index entry; jobs written back to the queue go to the scheduled set,
    whose promotion puts them in order by their due time."""
    return IndexEntry(
        id=record["id"],
        job_type=record["job_type"],
        priority=record["priority"],
        scheduled_for=record["scheduled_for"],
        deferred=True,
    )
