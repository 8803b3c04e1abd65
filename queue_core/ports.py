"""The two interfaces the engine talks to, so the whole claim path reads in one screen.

``PgStore`` and ``RedisIndex`` are the only implementations that touch a driver; tests may
substitute either.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from .models import NewJob

Job = dict[str, Any]
"""A job as handlers and callers see it: the columns of the jobs table, id as a string."""


@dataclass(frozen=True)
class IndexEntry:
    """What the Redis index needs to know of a queued job."""

    id: uuid.UUID
    job_type: str
    priority: int
    scheduled_for: datetime
    deferred: bool  # True: goes to the scheduled set; False: straight to the ready set


@dataclass(frozen=True)
class Attempt:
    """The fence of one running attempt: which job, which attempt, and the lease owner of
    the claim that started it (unique per claim, see queries.sql)."""

    id: uuid.UUID
    attempt: int
    owner: str


@dataclass(frozen=True)
class ClaimedIds:
    ids: list[uuid.UUID]
    scores: list[int]  # each id's ready score, to put it back if Postgres cannot confirm it
    wait_ms: int  # 0: more are ready; >0: ms until the next scheduled job; -1: none scheduled
    index_lost: bool = False  # Redis lost this type's index: claim from Postgres, rebuild


class JobStore(Protocol):
    async def insert_jobs(
        self, jobs: Sequence[NewJob], connection: Any | None = None
    ) -> list[Job]: ...
    async def notify(self, connection: Any, channel: str, payload: str) -> None: ...
    async def insert_job_once(
        self, job: NewJob, idempotency_key: str, fingerprint: str
    ) -> Job | None: ...
    async def get_job_by_idempotency_key(self, user_id: str | None, key: str) -> Job | None: ...
    async def list_jobs(
        self,
        *,
        user_id: str | None,
        before: uuid.UUID | None,
        status: str | None,
        job_type: str | None,
        limit: int,
    ) -> list[Job]: ...
    async def get_job(self, job_id: uuid.UUID) -> Job | None: ...
    async def claim_jobs(
        self,
        job_type: str,
        ids: Sequence[uuid.UUID],
        owner: str,
        lease_seconds: float,
        start_now: int | None = None,
    ) -> list[Job]: ...
    async def find_queued_jobs(self, ids: Sequence[uuid.UUID]) -> list[IndexEntry]: ...
    async def complete_jobs(
        self, results: Sequence[tuple[Attempt, str | None]]
    ) -> set[uuid.UUID]: ...
    async def retry_jobs(
        self, failures: Sequence[tuple[Attempt, str, float]]
    ) -> list[IndexEntry]: ...
    async def fail_jobs(self, failures: Sequence[tuple[Attempt, str]]) -> set[uuid.UUID]: ...
    async def extend_leases(
        self, attempts: Sequence[Attempt], lease_seconds: float
    ) -> set[uuid.UUID]: ...
    async def release_jobs(self, attempts: Sequence[Attempt]) -> list[IndexEntry]: ...
    async def cancel_job(self, job_id: uuid.UUID) -> Job | None: ...
    async def retry_job(self, job_id: uuid.UUID) -> Job | None: ...
    async def claim_jobs_from_postgres(
        self, job_type: str, limit: int, owner: str, lease_seconds: float
    ) -> list[Job]: ...
    async def server_time_ms(self) -> float: ...


@dataclass(frozen=True)
class PoppedId:
    """One id a blocking pop took from a ready set, with what restore_ids needs."""

    job_type: str
    id: uuid.UUID
    score: int


class ReadyIndex(Protocol):
    namespace: str  # the Redis key prefix; also names the transactional-enqueue channel

    async def add_jobs(self, entries: Sequence[IndexEntry]) -> None: ...
    async def claim_ids(self, job_type: str, now_ms: int, count: int) -> ClaimedIds: ...
    async def remove_jobs(self, entries: Sequence[IndexEntry]) -> None: ...
    async def restore_ids(
        self, job_type: str, ids: Sequence[uuid.UUID], scores: Sequence[int]
    ) -> None:
        """Put popped ids back where they were (their claim could not be confirmed)."""

    async def wait_pop(self, job_types: Sequence[str], timeout: float) -> PoppedId | None:
        """Block up to ``timeout`` seconds for a ready id of one of ``job_types`` and pop it
        (one waiting worker gets it); None when none came."""

    async def listen(self, job_types: Sequence[str], event: asyncio.Event) -> None:
        """Set ``event`` whenever a job of one of ``job_types`` is indexed; runs until
        cancelled."""
