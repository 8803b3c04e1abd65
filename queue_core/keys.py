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
from dataclasses import dataclass
from datetime import UTC, datetime

from .models import PRIORITY_MAX, PRIORITY_MIN

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
"""Due times count milliseconds from here: 2^41 ms reaches past the year 2093."""
DUE_BITS = 41
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


WAKE_MEMBER = b"w"


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
