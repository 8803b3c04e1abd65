"""Redis key names and score encoding for the ready-index. Pure: no I/O.

Per job type, two sorted sets share one hash tag so a Lua script may touch both on a
Redis Cluster:

- ``{<ns>:<job_type>}:scheduled``: jobs not yet due. Score = due time (ms since EPOCH);
  member = 16-byte job id + 2-byte priority rank, so promotion can compute the ready score
  without asking Postgres.
- ``{<ns>:<job_type>}:ready``: jobs due now. Score = priority rank * 2^41 + due time;
  member = the 16-byte job id. Ties on score fall back to the member, and ids are UUIDv7,
  so bytewise order is creation order: priority desc, due asc, creation asc.

Scores stay below 2^53 so a double (Redis scores, Lua numbers) holds them exactly.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from .models import EPOCH, PRIORITY_MAX, PRIORITY_MIN

DUE_BITS = 41
"""Due times count milliseconds from models.EPOCH: 2^41 ms reaches past the year 2093."""
DUE_MAX_MS = (1 << DUE_BITS) - 1
RANK_SPAN = PRIORITY_MAX - PRIORITY_MIN + 1
assert RANK_SPAN * (1 << DUE_BITS) < (1 << 53), "ready score would lose precision"


@dataclass(frozen=True)
class TypeKeys:
    """The Redis names of one job type's index."""

    scheduled: str
    ready: str
    epoch: str  # present while the index is known complete (see lua/claim_ready.lua)
    rebuild: str  # token of a rebuild in progress (see lua/finish_rebuild.lua)
    # Holds WAKE_MEMBER after jobs were scheduled: an idle worker blocked in BZPOPMIN on
    # the ready set (redis_index.wait_pop) also watches this set, to learn that it must
    # run a claim to time the promotion of a job that is not due yet.
    wake: str
    wake_channel: str

    def set_key(self, which: IndexSet) -> str:
        return self.ready if which == IndexSet.READY else self.scheduled


class IndexSet(StrEnum):
    """The two sorted sets of a type's index."""

    READY = "ready"
    SCHEDULED = "scheduled"


WAKE_MEMBER = b"w"


@dataclass(frozen=True)
class IndexedScores:
    """Where one queued job stands in its type's index."""

    ready: float | None  # its score in the ready set, if it is there
    scheduled: float | None  # its score in the scheduled set, if it is there


@dataclass
class IndexWrites:
    """Members to add (member -> score) and remove in one type's two sets: the repairs of
    one page of queued jobs, applied in one round trip (index/repair.py)."""

    ready: dict[bytes, int] = field(default_factory=dict)
    scheduled: dict[bytes, int] = field(default_factory=dict)
    remove_ready: list[bytes] = field(default_factory=list)
    remove_scheduled: list[bytes] = field(default_factory=list)


def type_keys(namespace: str, job_type: str) -> TypeKeys:
    tag = f"{{{namespace}:{job_type}}}"
    return TypeKeys(
        scheduled=f"{tag}:scheduled",
        ready=f"{tag}:ready",
        epoch=f"{tag}:epoch",
        rebuild=f"{tag}:rebuild",
        wake=f"{tag}:wake",
        wake_channel=f"{namespace}:wake:{job_type}",
    )


def rate_limit_key(namespace: str, bucket: str) -> str:
    """The token bucket of one API caller (lua/rate_limit.lua); ``bucket`` names the caller."""
    return f"{{{namespace}:rate}}:{bucket}"


def events_stream(namespace: str, job_type: str, job_id: str) -> str:
    """The stream of what a job's handler emitted (``emit()``): under its type's hash tag,
    so one XREAD can follow many jobs of a type on a Redis Cluster."""
    return f"{{{namespace}:{job_type}}}:events:{job_id}"


def job_channel(namespace: str, job_id: str) -> str:
    """Pub/sub: status and progress changes of one job (wait(), a job's SSE stream)."""
    return f"{namespace}:job:{job_id}"


def user_channel(namespace: str, user_id: str | None) -> str:
    """Pub/sub: status changes of one owner's jobs (GET /events); '' for jobs without one."""
    return f"{namespace}:user:{user_id or ''}"


def every_user_channel(namespace: str) -> str:
    """The pattern of every owner's channel (an admin's GET /events)."""
    return f"{namespace}:user:*"


def workers_key(namespace: str) -> str:
    """Sorted set of the workers that announced themselves: member worker id, score the
    time of its latest announcement (ms since the Unix epoch, the worker's clock). Only a
    directory: whether a worker is alive is whether its worker_key still exists. The tag
    ``{<ns>}`` is no job type's (those are ``{<ns>:<type>}``), so the index scans never see
    it, and it shares a slot with every worker_key (one MULTI on a Redis Cluster)."""
    return f"{{{namespace}}}:workers"


def worker_key(namespace: str, worker_id: str) -> str:
    """One worker's announcement: JSON ``{"job_types": [...]}``, set with a time to live
    and renewed while the worker runs, so it vanishes on its own when the worker dies."""
    return f"{{{namespace}}}:worker:{worker_id}"


def index_key_pattern(namespace: str) -> str:
    """SCAN pattern matching every ready and scheduled set of the namespace."""
    return f"{{{namespace}:*}}:*"


def job_type_of_key(namespace: str, key: str) -> str | None:
    """The job type a key of the namespace belongs to (None for a foreign key)."""
    prefix = f"{{{namespace}:"
    if not key.startswith(prefix) or "}:" not in key:
        return None
    return key[len(prefix) : key.rindex("}:")]


def due_ms(when: datetime) -> int:
    """Milliseconds from EPOCH, clamped to the score's range."""
    delta = when - EPOCH
    ms = delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000
    return min(max(ms, 0), DUE_MAX_MS)


def priority_rank(priority: int) -> int:
    """0 for the highest priority; lower rank pops first."""
    return PRIORITY_MAX - priority


def ready_score(priority: int, due: datetime) -> int:
    return priority_rank(priority) * (1 << DUE_BITS) + due_ms(due)


def ready_member(job_id: uuid.UUID) -> bytes:
    return job_id.bytes


def scheduled_member(job_id: uuid.UUID, priority: int) -> bytes:
    return job_id.bytes + priority_rank(priority).to_bytes(2, "big")


def is_member(member: bytes, *, scheduled: bool) -> bool:
    """Whether ``member`` has the shape of a member of that set (16-byte id, + 2-byte rank
    in the scheduled set). Anything else was written by something other than hybridq."""
    return len(member) == (18 if scheduled else 16)


def job_id_from_member(member: bytes) -> uuid.UUID:
    return uuid.UUID(bytes=bytes(member[:16]))
