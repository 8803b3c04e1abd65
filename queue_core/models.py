"""The data of the engine: job statuses and limits, the validated shape of a job to create,
and the named records that pass between the engine and its stores (an attempt's fence, an
index entry, the rows of a batched write). Pure: no I/O."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from .errors import InvalidJob, JobNotFound
from .json_values import JsonValueError, encode_json

Job = dict[str, Any]
"""A job as handlers and callers see it: the columns of the jobs table, id as a string."""

UNDECODABLE = "hybridq_undecodable"
"""The only key of a stored JSON value that could not be read back (store/connection.py):
its value says why. A job whose input is one fails without running."""


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})

PRIORITY_MIN = -1000
PRIORITY_MAX = 1000
"""Priority bounds. The Redis score packs (PRIORITY_MAX - priority) above a 41-bit due time,
and the two must fit in the 53 bits a double holds exactly (see keys.ready_score)."""
MAX_RETRIES_LIMIT = 100
JOB_TYPE_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,99}$")
"""A job type names Redis keys and metrics labels: a short identifier, no braces or spaces."""
USER_ID_MAX_LENGTH = 200
SCHEDULE_HORIZON = timedelta(days=366 * 10)
"""scheduled_for may not be further ahead than this."""
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
"""Where time starts for the queue: Redis due times count milliseconds from here (keys.py),
and scheduled_for may not be earlier, so that both stores order every accepted time the
same way."""


@dataclass(frozen=True)
class NewJob:
    """A job to insert, already validated. Build it with ``NewJob.build(...)``."""

    id: uuid.UUID
    job_type: str
    input_json: str
    user_id: str | None
    priority: int
    max_retries: int
    scheduled_for: datetime | None

    @classmethod
    def build(
        cls,
        *,
        id: uuid.UUID,
        job_type: str,
        input: Any,
        user_id: str | None,
        priority: int,
        max_retries: int,
        scheduled_for: datetime | None,
    ) -> NewJob:
        return cls(
            id=id,
            job_type=validate_job_type(job_type),
            input_json=encode_input(input),
            user_id=_validate_user_id(user_id),
            priority=_validate_int("priority", priority, PRIORITY_MIN, PRIORITY_MAX),
            max_retries=_validate_int("max_retries", max_retries, 0, MAX_RETRIES_LIMIT),
            scheduled_for=_validate_scheduled_for(scheduled_for),
        )


def validate_job_type(job_type: Any) -> str:
    if not isinstance(job_type, str) or not JOB_TYPE_PATTERN.fullmatch(job_type):
        raise InvalidJob(f"job_type must match {JOB_TYPE_PATTERN.pattern} (got {job_type!r:.120})")
    return job_type


def encode_input(value: Any) -> str:
    """JSON text of a job's input: a JSON object within the limits of json_values.py (no
    NaN or Infinity, NUL or lone surrogates, depth, number size). Raises InvalidJob."""
    if not isinstance(value, dict):
        raise InvalidJob(f"input must be a JSON object (a dict), got {type(value).__name__}")
    try:
        return encode_json(value, "input")
    except JsonValueError as exc:
        raise InvalidJob(str(exc)) from None


def encode_output(value: Any) -> str | None:
    """JSON text of a handler's return value. ``None`` stores SQL NULL. Raises TypeError
    naming the problem for anything but a dict within the limits of json_values.py."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"handler must return a dict or None, got {type(value).__name__}")
    try:
        return encode_json(value, "output")
    except JsonValueError as exc:
        raise TypeError(f"handler returned {exc}") from None


def parse_job_id(job_id: Any) -> uuid.UUID:
    """A job id as a UUID; a malformed id cannot name a job, so it is JobNotFound."""
    if isinstance(job_id, uuid.UUID):
        return job_id
    try:
        return uuid.UUID(str(job_id))
    except ValueError:
        raise JobNotFound(f"no job with id {job_id!r:.80} (not a UUID)") from None


def _validate_user_id(user_id: Any) -> str | None:
    if user_id is None:
        return None
    if not isinstance(user_id, str) or not 0 < len(user_id) <= USER_ID_MAX_LENGTH:
        raise InvalidJob(f"user_id must be a string of 1..{USER_ID_MAX_LENGTH} characters")
    if "\x00" in user_id:
        raise InvalidJob("user_id must not contain NUL characters")
    return user_id


def _validate_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJob(f"{name} must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidJob(f"{name} must be between {low} and {high}, got {value}")
    return value


def _validate_scheduled_for(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidJob(f"scheduled_for must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidJob("scheduled_for must be timezone-aware (e.g. datetime.now(timezone.utc))")
    if value < EPOCH or value > datetime.now(UTC) + SCHEDULE_HORIZON:
        raise InvalidJob(f"scheduled_for {value.isoformat()} is out of range")
    # Millisecond precision everywhere: the Redis score holds milliseconds, and the two stores
    # must agree exactly on the order of jobs.
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class Attempt:
    """The fence of one running attempt: which job, which attempt, and the lease owner of
    the claim that started it (unique per claim, see store/queries.sql)."""

    id: uuid.UUID
    attempt: int
    owner: str


@dataclass(frozen=True)
class IndexEntry:
    """What the Redis index needs to know of a queued job."""

    id: uuid.UUID
    job_type: str
    priority: int
    scheduled_for: datetime
    deferred: bool  # True: goes to the scheduled set; False: straight to the ready set


@dataclass(frozen=True)
class Completion:
    """A succeeded attempt to record: its output as JSON text (None stores SQL NULL)."""

    attempt: Attempt
    output_json: str | None


@dataclass(frozen=True)
class RetryLater:
    """A failed attempt with retries left: queued again after ``delay_seconds``. ``error``
    (jobs.last_error) is for the job's owner; ``detail`` (jobs.error_detail) for admins."""

    attempt: Attempt
    error: str
    delay_seconds: float
    detail: str | None = None


@dataclass(frozen=True)
class Failure:
    """A failed attempt with no retry left (or a PermanentJobError): the job fails."""

    attempt: Attempt
    error: str
    detail: str | None = None


@dataclass(frozen=True)
class Progress:
    """The latest progress a running attempt reported (queue_core.progress)."""

    attempt: Attempt
    fraction: float
    message: str


@dataclass(frozen=True)
class RescuedLease:
    """A running job whose lease expired, put back by the reconciler: ``status`` is queued
    (a retry remains; ``entry`` goes back to the index) or failed."""

    entry: IndexEntry
    status: JobStatus
    user_id: str | None = None


@dataclass(frozen=True)
class JobCount:
    job_type: str
    status: str
    jobs: int


@dataclass(frozen=True)
class ClaimedIds:
    """What one claim script call popped from a type's ready set."""

    ids: list[uuid.UUID]
    scores: list[int]  # each id's ready score, to put it back if Postgres cannot confirm it
    wait_ms: int  # 0: more are ready; >0: ms until the next scheduled job; -1: none scheduled
    index_lost: bool = False  # Redis lost this type's index: claim from Postgres, rebuild


@dataclass(frozen=True)
class PoppedId:
    """One id a blocking pop took from a ready set, with what restore_ids needs."""

    job_type: str
    id: uuid.UUID
    score: int


@dataclass(frozen=True)
class JobEvent:
    """A change of a job that live readers (wait(), SSE) are told of, after the Postgres
    commit that made it: ``kind`` is "status" (``status`` and ``attempts`` set) or
    "progress" (``progress`` and ``message`` set)."""

    job_id: str
    job_type: str
    user_id: str | None
    kind: str = "status"
    status: str | None = None
    attempts: int | None = None
    progress: float | None = None
    message: str | None = None

    def payload(self) -> dict[str, Any]:
        """The JSON sent on the channels (and in SSE ``status`` / ``progress`` events)."""
        body: dict[str, Any] = {"job_id": self.job_id, "kind": self.kind}
        if self.kind == "status":
            body.update(status=self.status, attempts=self.attempts)
        else:
            body.update(progress=self.progress, message=self.message)
        return body


@dataclass(frozen=True)
class LiveWorker:
    """A worker that announced itself within its announcement's time to live (one lease):
    which job types it has registered (index/presence.py)."""

    worker_id: str
    job_types: tuple[str, ...]
