"""The interfaces the engine talks to, so the whole claim path reads in one screen.

``store.PgStore`` implements ``JobStore`` and ``index.RedisIndex`` implements ``ReadyIndex``
and ``IndexMaintenance``; they are the only modules that touch a driver. The engine above
them (enqueue, worker, maintenance) names only these Protocols, each part the narrowest one
it needs, so tests may substitute any of them (tests/unit/test_ports.py holds the
implementations and the Protocols to the same methods).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from .keys import IndexedScores, IndexSet, IndexWrites
from .models import (
    Attempt,
    ClaimedIds,
    Completion,
    Failure,
    IndexEntry,
    Job,
    JobCount,
    JobEvent,
    LiveWorker,
    NewJob,
    PoppedId,
    Progress,
    RescuedLease,
    RetryLater,
)
from .periodic import TickJob


class EnqueueStore(Protocol):
    """What JobService needs: creating jobs and changing them on a caller's request."""

    async def insert_jobs(
        self, jobs: Sequence[NewJob], connection: Any | None = None
    ) -> list[Job]: ...
    async def insert_job_once(
        self, job: NewJob, idempotency_key: str, fingerprint: str
    ) -> Job | None: ...
    async def get_job_by_idempotency_key(self, user_id: str | None, key: str) -> Job | None: ...
    async def notify(self, connection: Any, channel: str, payload: str) -> None: ...
    async def get_job(self, job_id: uuid.UUID) -> Job | None: ...
    async def list_jobs(
        self,
        *,
        user_id: str | None,
        before: uuid.UUID | None,
        status: str | None,
        job_type: str | None,
        limit: int,
    ) -> list[Job]: ...
    async def cancel_job(self, job_id: uuid.UUID) -> Job | None: ...
    async def retry_job(self, job_id: uuid.UUID) -> Job | None: ...


class ClaimStore(Protocol):
    """What a worker needs to claim jobs and hold their leases."""

    async def claim_jobs(
        self,
        job_type: str,
        ids: Sequence[uuid.UUID],
        owner: str,
        lease_seconds: float,
        start_now: int | None = None,
    ) -> list[Job]: ...
    async def claim_jobs_from_postgres(
        self, job_type: str, limit: int, owner: str, lease_seconds: float
    ) -> list[Job]: ...
    async def find_queued_jobs(self, ids: Sequence[uuid.UUID]) -> list[IndexEntry]: ...
    async def extend_leases(
        self, attempts: Sequence[Attempt], lease_seconds: float
    ) -> set[uuid.UUID]: ...
    async def extend_worker_leases(self, worker_id: str, lease_seconds: float) -> int:
        """Every lease of one worker's claims (the lease backstop, while its keeper is
        silent); how many were extended."""

    async def release_jobs(
        self, attempts: Sequence[Attempt], delay_seconds: float = 0.0
    ) -> list[IndexEntry]:
        """Give attempts back uncounted, due again no sooner than ``delay_seconds``."""

    async def server_time_ms(self) -> float: ...
    def listening(
        self, channel: str, callback: Callable[..., None]
    ) -> AbstractAsyncContextManager[Callable[[], bool]]: ...


class OutcomeStore(Protocol):
    """What a worker needs to record how attempts ended: one fenced statement per kind."""

    async def complete_jobs(self, results: Sequence[Completion]) -> set[uuid.UUID]: ...
    async def retry_jobs(self, failures: Sequence[RetryLater]) -> list[IndexEntry]: ...
    async def fail_jobs(self, failures: Sequence[Failure]) -> set[uuid.UUID]: ...
    async def note_errors(self, failures: Sequence[Failure]) -> set[uuid.UUID]:
        """last_error of attempts still running (past their timeout), status unchanged."""

    async def write_progress(self, updates: Sequence[Progress]) -> set[uuid.UUID]:
        """The latest progress of attempts still running."""


class MaintenanceStore(Protocol):
    """What the reconciler and the operator commands need."""

    async def rescue_expired_leases(
        self, limit: int, backoff_base: float, backoff_cap: float
    ) -> list[RescuedLease]: ...
    async def queued_job_types(self) -> list[str]: ...
    async def queued_jobs_page(
        self, job_type: str, after: IndexEntry | None, limit: int
    ) -> list[IndexEntry]: ...
    async def find_queued_jobs(self, ids: Sequence[uuid.UUID]) -> list[IndexEntry]: ...
    def reconcile_lock(self) -> AbstractAsyncContextManager[bool]: ...
    async def count_jobs(self) -> list[JobCount]: ...
    async def oldest_due_queued_jobs(self) -> dict[str, datetime]: ...
    async def retry_jobs_in_bulk(
        self, status: str, job_type: str | None, limit: int, finished_by: datetime
    ) -> list[IndexEntry]: ...
    async def delete_finished_jobs(
        self,
        *,
        before_id: uuid.UUID,
        finished_before: datetime,
        after_id: uuid.UUID,
        statuses: Sequence[str],
        limit: int,
    ) -> list[uuid.UUID]: ...
    async def list_failures(self, job_type: str | None, limit: int) -> list[Job]: ...
    async def start_periodic_schedules(self, names: Sequence[str], now: datetime) -> None: ...
    async def periodic_schedule_positions(
        self, names: Sequence[str]
    ) -> dict[str, datetime]: ...
    async def advance_periodic_schedule(
        self,
        name: str,
        from_position: datetime,
        to_position: datetime,
        jobs: Sequence[TickJob],
    ) -> list[Job] | None:
        """Move a schedule and insert its due ticks' jobs in one transaction; None (nothing
        written) when another scheduler moved it first."""

    async def server_now(self) -> datetime: ...
    async def server_time_ms(self) -> float: ...
    async def ping(self) -> None: ...


class JobStore(EnqueueStore, ClaimStore, OutcomeStore, MaintenanceStore, Protocol):
    """Everything the engine asks of Postgres: what PgStore implements."""


class ReadyIndex(Protocol):
    """The Redis index on the hot path: enqueue, claim, wake-ups."""

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

    async def depths(self, job_types: Sequence[str]) -> dict[str, tuple[int, int]]:
        """(ready, scheduled) ids indexed per job type."""

    async def keep_worker_announced(
        self, worker_id: str, job_types: Sequence[str], ttl_seconds: float
    ) -> None:
        """Announce that this worker runs ``job_types``, renewed until cancelled; the
        announcement expires ``ttl_seconds`` after the last renewal. Never raises for an
        unreachable Redis (it retries at the next renewal)."""

    async def live_workers(self) -> list[LiveWorker]:
        """The workers whose announcement has not expired."""

    async def ping(self) -> None: ...


class EventSink(Protocol):
    """Where committed changes are told to live readers (index/events.py: Redis pub/sub and
    streams). Returns at once; delivery is best effort, Postgres stays the truth."""

    def publish(self, events: Sequence[JobEvent]) -> None: ...
    def append(self, job_type: str, job_id: str, data_json: str) -> None: ...


class EventFollower(Protocol):
    """How a process follows live events (index/events.py's EventHub)."""

    def subscribe(self, *channels: str) -> AbstractAsyncContextManager[Subscription]:
        """Follow these channels for the block; raises BackendUnavailable('redis')."""


class Subscription(Protocol):
    overflowed: bool  # the reader fell behind and missed messages

    async def get(self, timeout: float) -> dict[str, Any] | None:
        """The next message (decoded JSON), or None after ``timeout`` seconds."""


class IndexMaintenance(Protocol):
    """What the reconciler needs of Redis beyond the hot path (index/repair.py)."""

    async def scores_of(
        self, job_type: str, entries: Sequence[IndexEntry]
    ) -> list[IndexedScores]: ...
    async def put(self, job_type: str, writes: IndexWrites) -> None: ...
    async def job_types(self) -> set[str]: ...
    def scan_pages(
        self, job_type: str, which: IndexSet, page_size: int
    ) -> AsyncIterator[list[tuple[bytes, float]]]: ...
    async def remove_if_unchanged(
        self, job_type: str, which: IndexSet, members: Sequence[tuple[bytes, float]]
    ) -> int: ...
    async def epoch_missing(self, job_types: Sequence[str]) -> set[str]: ...
    async def begin_rebuild(self, job_type: str) -> str: ...
    async def finish_rebuild(self, job_type: str, token: str) -> bool: ...


@dataclass(frozen=True)
class ApiToken:
    """A managed API token as stored (never the token, nor its hash). ``user_id`` is None
    for an admin token; ``expires_at`` None: it never expires."""

    id: uuid.UUID
    user_id: str | None
    admin: bool
    name: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime) -> str:
        """"active", "expired" or "revoked" at ``now`` (timezone-aware)."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


class TokenStore(Protocol):
    """Managed API tokens in Postgres (store.PgTokenStore): the CLI creates, lists and
    revokes them; every API replica looks them up by hash."""

    async def insert_api_token(
        self,
        token_hash: str,
        *,
        user_id: str | None,
        admin: bool,
        name: str | None,
        expires_at: datetime | None,
    ) -> ApiToken: ...
    async def list_api_tokens(self) -> list[ApiToken]: ...
    async def revoke_api_token(self, token_id: uuid.UUID) -> ApiToken | None: ...
    async def find_api_token(self, token_hash: str) -> ApiToken | None: ...


class SessionStore(Protocol):
    """Dashboard sessions in Postgres (store.PgSessionStore), shared by every API replica.
    Sessions are named by the SHA-256 of their id; times are in seconds."""

    async def insert_dashboard_session(
        self, id_hash: str, token_hash: str, max_seconds: float
    ) -> None: ...
    async def touch_dashboard_session(
        self, id_hash: str, idle_seconds: float, *, activity: bool
    ) -> str | None:
        """The hash of the token behind a live session (None: ended or unknown)."""

    async def delete_dashboard_session(self, id_hash: str) -> None: ...
    async def delete_ended_dashboard_sessions(self, idle_seconds: float) -> int: ...
