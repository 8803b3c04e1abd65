"""JobService: how application code creates and manages jobs.

A job exists once its INSERT commits in Postgres; that commit is the acknowledgement.
Indexing it in Redis comes second, in the background (index_writer.py), and may fail
(logged): the reconciler indexes any queued job Redis lacks, so a Redis outage delays a job,
never loses it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from queue_core.contracts import ContractRegistry
from queue_core.errors import (
    BackendUnavailable,
    DuplicateJob,
    InvalidJob,
    JobNotFound,
    JobStateConflict,
)
from queue_core.ids import uuid7
from queue_core.models import IndexEntry, Job, JobEvent, JobStatus, NewJob, parse_job_id
from queue_core.ports import EnqueueStore, EventFollower, EventSink, ReadyIndex
from queue_core.telemetry.metrics import Metrics

from .committed_jobs import channel_name, encode_payloads
from .group_commit import GroupCommit
from .index_writer import IndexWriter
from .waiting import wait_for_job

log = logging.getLogger(__name__)

CREATE_MANY_MAX = 10_000
"""Jobs per create_many() call at most: one statement must stay a reasonable size."""


def index_entry(job: Job, *, deferred: bool) -> IndexEntry:
    return IndexEntry(
        id=parse_job_id(job["id"]),
        job_type=job["job_type"],
        priority=job["priority"],
        scheduled_for=job["scheduled_for"],
        deferred=deferred,
    )


class JobService:
    def __init__(
        self,
        store: EnqueueStore,
        index: ReadyIndex,
        contracts: ContractRegistry | None = None,
        metrics: Metrics | None = None,
        *,
        events: EventSink | None = None,
        follower: EventFollower | None = None,
    ) -> None:
        """With ``contracts``, create() also rejects job types nobody registered and input
        that breaks a type's declared model (what the API does). ``events`` is told of the
        status changes made here; ``follower`` lets wait() follow a job live."""
        self.store = store
        self.index = index
        self.contracts = contracts
        self.metrics = metrics
        self.events = events
        self.follower = follower
        self._group_commit = GroupCommit(self._insert_and_index)
        self._index_writer = IndexWriter(index)

    async def wait_indexed(self) -> None:
        """Wait until the jobs created so far are in the Redis index (or failed to get
        there). create() returns at the Postgres commit and indexes in the background;
        call this where the next step needs the index (tests, a script about to exit)."""
        await self._index_writer.flush()

    async def wait(self, job_id: Any, timeout: float = 30.0) -> Job:
        """The job once it is finished (succeeded, failed or cancelled), as soon as that is
        committed: followed live through Redis, or by polling Postgres while Redis is
        unreachable. Raises WaitTimeout (``.job``: its state then) after ``timeout`` seconds,
        JobNotFound for no such job, InvalidJob for a timeout that is not a positive
        number of seconds."""
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise InvalidJob(f"timeout must be a positive number of seconds, got {timeout!r}")
        job_id = str(parse_job_id(job_id))
        return await wait_for_job(
            self.get, self.follower, self.index.namespace, job_id, float(timeout)
        )

    def _tell(self, jobs: Sequence[Job], status: str) -> None:
        """Live readers hear of these committed changes (best effort, in the background)."""
        if self.events is not None and jobs:
            self.events.publish(
                [
                    JobEvent(
                        j["id"],
                        j["job_type"],
                        j.get("user_id"),
                        status=status,
                        attempts=j["attempts"],
                    )
                    for j in jobs
                ]
            )

    async def aclose(self, timeout: float = 5.0) -> None:
        """Finish the background index writes, for at most ``timeout`` seconds."""
        await self._index_writer.close(timeout)

    async def create(
        self,
        job_type: str,
        input: dict[str, Any],
        user_id: str | None = None,
        priority: int = 0,
        max_retries: int = 3,
        scheduled_for: datetime | None = None,
        connection: Any | None = None,
    ) -> Job:
        """Enqueue one job; returns it as stored. Raises InvalidJob for bad arguments and
        BackendUnavailable when Postgres cannot be reached (then nothing was enqueued).

        With ``connection`` (an asyncpg connection inside the caller's transaction), the job
        exists only if that transaction commits, and workers pick it up right after the
        commit (see committed_jobs.py)."""
        new = self._validated(job_type, input, user_id, priority, max_retries, scheduled_for)
        if connection is None:
            return await self._group_commit.insert(new)
        [job] = await self._insert([new], connection)
        return job

    def _validated(
        self,
        job_type: str,
        input: Any,
        user_id: str | None,
        priority: int,
        max_retries: int,
        scheduled_for: datetime | None,
    ) -> NewJob:
        if self.contracts is not None:
            self.contracts.validate(job_type, input)
        return NewJob.build(
            id=uuid7(),
            job_type=job_type,
            input=input,
            user_id=user_id,
            priority=priority,
            max_retries=max_retries,
            scheduled_for=scheduled_for,
        )

    async def create_once(
        self,
        job_type: str,
        input: dict[str, Any],
        user_id: str | None = None,
        priority: int = 0,
        max_retries: int = 3,
        scheduled_for: datetime | None = None,
        *,
        idempotency_key: str,
        fingerprint: str | None = None,
    ) -> tuple[Job, bool]:
        """create() at most once per (user_id, idempotency_key): returns (job, created).
        A repeat of the same request returns the first job with created=False; a different
        request under a used key raises DuplicateJob. ``fingerprint`` identifies "the same
        request" (default: a hash of these arguments)."""
        if (
            not isinstance(idempotency_key, str)
            or not 0 < len(idempotency_key) <= 200
            or "\x00" in idempotency_key
        ):
            raise InvalidJob("idempotency_key must be 1..200 characters, without NUL")
        new = self._validated(job_type, input, user_id, priority, max_retries, scheduled_for)
        fingerprint = fingerprint or _fingerprint(new)
        job = await self.store.insert_job_once(new, idempotency_key, fingerprint)
        if job is not None:
            self._count_enqueued([job])
            self._tell([job], "queued")
            self._index_writer.submit([index_entry(job, deferred=True)])
            return job, True
        existing = await self.store.get_job_by_idempotency_key(user_id, idempotency_key)
        if existing is None:  # the holder was deleted (retention) between the two statements
            raise DuplicateJob(f"idempotency key {idempotency_key!r} is in use; retry")
        if existing["request_fingerprint"] != fingerprint:
            raise DuplicateJob(
                f"idempotency key {idempotency_key!r} was used for a different request"
            )
        return existing, False

    async def list_jobs(
        self,
        *,
        user_id: str | None,
        status: str | None = None,
        job_type: str | None = None,
        limit: int = 50,
        before: Any | None = None,
    ) -> list[Job]:
        """Jobs newest first; ``user_id`` None means every owner's. ``before``: the id of the
        last job of the previous page (keyset pagination)."""
        if status is not None and status not in set(JobStatus):
            raise InvalidJob(f"status must be one of {', '.join(JobStatus)}")
        return await self.store.list_jobs(
            user_id=user_id,
            before=parse_job_id(before) if before else None,
            status=status,
            job_type=job_type,
            limit=limit,
        )

    async def create_many(
        self, jobs: Sequence[Mapping[str, Any]], connection: Any | None = None
    ) -> list[Job]:
        """Enqueue several jobs: one INSERT and one Redis pipeline. Each item takes the
        keyword arguments of create(). All or nothing in Postgres. ``connection``: as in
        create()."""
        if len(jobs) > CREATE_MANY_MAX:
            raise InvalidJob(f"create_many takes at most {CREATE_MANY_MAX} jobs, got {len(jobs)}")
        new_jobs = [self._build(i, spec) for i, spec in enumerate(jobs)]
        return await self._insert(new_jobs, connection) if new_jobs else []

    async def get(self, job_id: Any) -> Job:
        job = await self.store.get_job(parse_job_id(job_id))
        if job is None:
            raise JobNotFound(f"no job with id {job_id}")
        return job

    async def cancel(self, job_id: Any) -> Job:
        """A queued job is cancelled and leaves the index; a running job is cancelled and its
        worker stops the handler at its next heartbeat. A finished job: JobStateConflict."""
        job = await self.store.cancel_job(parse_job_id(job_id))
        if job is None:
            raise self._conflict(await self.get(job_id), "cancel")
        entries = [index_entry(job, deferred=False)]
        # A background index write of this job (just created) must land before the removal,
        # or it would put the cancelled job's id back.
        await self._index_writer.flush()
        await self._index_quietly("remove_jobs", self.index.remove_jobs, entries)
        self._tell([job], "cancelled")
        return job

    async def retry(self, job_id: Any) -> Job:
        """A failed or cancelled job is queued again to run now, with a fresh allowance of
        max_retries retries."""
        job = await self.store.retry_job(parse_job_id(job_id))
        if job is None:
            raise self._conflict(await self.get(job_id), "retry")
        entries = [index_entry(job, deferred=False)]
        await self._index_quietly("add_jobs", self.index.add_jobs, entries)
        self._tell([job], "queued")
        return job

    async def _insert(self, new_jobs: list[NewJob], connection: Any | None) -> list[Job]:
        if connection is None:
            return await self._insert_and_index(new_jobs)
        jobs = await self.store.insert_jobs(new_jobs, connection)
        self._count_enqueued(jobs)  # counted at insert: the caller may still roll back
        channel = channel_name(self.index.namespace)
        for payload in encode_payloads(_entries(jobs, new_jobs)):
            await self.store.notify(connection, channel, payload)
        return jobs

    async def _insert_and_index(self, new_jobs: list[NewJob]) -> list[Job]:
        """One INSERT (committed: the acknowledgement), then the index write, queued for
        the background (one Lua call per job type for everything committed meanwhile)."""
        try:
            jobs = await self.store.insert_jobs(new_jobs)
        except asyncio.CancelledError:
            # The caller gave up mid-INSERT: the commit may still have happened. Index the
            # ids anyway; if the rows never committed, workers drop them at claim time.
            self._index_writer.submit([_entry_of_new(new) for new in new_jobs])
            raise
        self._count_enqueued(jobs)
        self._tell(jobs, "queued")
        self._index_writer.submit(_entries(jobs, new_jobs))
        return jobs

    def _count_enqueued(self, jobs: list[Job]) -> None:
        if self.metrics is not None:
            for job in jobs:
                self.metrics.enqueued.labels(job["job_type"]).inc()

    @staticmethod
    async def _index_quietly(
        action: str,
        write: Callable[[Sequence[IndexEntry]], Awaitable[None]],
        entries: list[IndexEntry],
    ) -> None:
        """Postgres already committed: a Redis failure here only delays the job until the
        reconciler repairs the index, so it is logged, not raised."""
        try:
            await write(entries)
        except BackendUnavailable as exc:
            log.warning(
                "redis index not updated; the reconciler will repair it",
                extra={"action": action, "jobs": len(entries), "error": str(exc)},
            )

    def _build(self, position: int, spec: Mapping[str, Any]) -> NewJob:
        if not isinstance(spec, Mapping):
            raise InvalidJob(f"jobs[{position}] must be a mapping of create() arguments")
        unknown = set(spec) - {
            "job_type",
            "input",
            "user_id",
            "priority",
            "max_retries",
            "scheduled_for",
        }
        if unknown:
            raise InvalidJob(f"jobs[{position}] has unknown fields: {sorted(unknown)}")
        if "job_type" not in spec or "input" not in spec:
            raise InvalidJob(f"jobs[{position}] needs job_type and input")
        try:
            return self._validated(
                spec["job_type"],
                spec["input"],
                spec.get("user_id"),
                spec.get("priority", 0),
                spec.get("max_retries", 3),
                spec.get("scheduled_for"),
            )
        except InvalidJob as exc:
            raise InvalidJob(f"jobs[{position}]: {exc}") from None

    @staticmethod
    def _conflict(job: Job, operation: str) -> JobStateConflict:
        allowed = {"cancel": "queued or running", "retry": "failed or cancelled"}[operation]
        return JobStateConflict(
            f"cannot {operation} job {job['id']}: it is {job['status']}, not {allowed}",
            status=job["status"],
        )


def _entries(jobs: list[Job], new_jobs: list[NewJob]) -> list[IndexEntry]:
    """Jobs created without a time go straight to the ready set; the others to the
    scheduled set, whose promotion puts them in order by their due time."""
    return [
        index_entry(job, deferred=new.scheduled_for is not None)
        for job, new in zip(jobs, new_jobs, strict=True)
    ]


def _entry_of_new(new: NewJob) -> IndexEntry:
    """The index entry of a job whose insert did not report back (due now when unset)."""
    return IndexEntry(
        id=new.id,
        job_type=new.job_type,
        priority=new.priority,
        scheduled_for=new.scheduled_for or datetime.now(UTC),
        deferred=new.scheduled_for is not None,
    )


def _fingerprint(job: NewJob) -> str:
    """What makes two create_once() calls "the same request"."""
    when = job.scheduled_for.isoformat() if job.scheduled_for else ""
    text = "\x1f".join(
        [
            job.job_type,
            job.input_json,
            job.user_id or "",
            str(job.priority),
            str(job.max_retries),
            when,
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()
