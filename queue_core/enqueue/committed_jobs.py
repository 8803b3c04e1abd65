"""Transactional enqueue: index jobs that were created inside a caller's transaction.

``create(..., connection=conn)`` cannot touch Redis, because the caller's transaction may
still roll back. It sends ``pg_notify`` in that transaction instead; Postgres delivers the
notification only if the transaction commits. Every worker LISTENs and indexes what it is
told (ZADD is idempotent, so several workers doing it is harmless), and the job is picked up
within milliseconds of the commit. If no worker is listening, the reconciler indexes the
job at its next run.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from queue_core.errors import BackendUnavailable
from queue_core.models import IndexEntry
from queue_core.ports import ClaimStore, ReadyIndex

log = logging.getLogger(__name__)

PAYLOAD_MAX_BYTES = 7800
"""pg_notify payloads must stay under 8000 bytes; larger batches are split."""


def channel_name(namespace: str) -> str:
    """A LISTEN channel per namespace; hashed because identifiers stop at 63 bytes."""
    return "hybridq_" + hashlib.sha1(namespace.encode()).hexdigest()[:20]


def encode_payloads(entries: Sequence[IndexEntry]) -> Iterator[str]:
    chunk: list[list[object]] = []
    size = 2
    for e in entries:
        item: list[object] = [
            e.id.hex,
            e.job_type,
            e.priority,
            int(e.scheduled_for.timestamp() * 1000),
            int(e.deferred),
        ]
        item_size = len(json.dumps(item)) + 1
        if chunk and size + item_size > PAYLOAD_MAX_BYTES:
            yield json.dumps(chunk, separators=(",", ":"))
            chunk, size = [], 2
        chunk.append(item)
        size += item_size
    if chunk:
        yield json.dumps(chunk, separators=(",", ":"))


def decode_payload(payload: str) -> list[IndexEntry]:
    return [
        IndexEntry(
            id=uuid.UUID(hex=item[0]),
            job_type=item[1],
            priority=int(item[2]),
            scheduled_for=datetime.fromtimestamp(item[3] / 1000, tz=UTC),
            deferred=bool(item[4]),
        )
        for item in json.loads(payload)
    ]


async def index_committed_jobs(store: ClaimStore, index: ReadyIndex, namespace: str) -> None:
    """LISTEN for committed transactional jobs and index them; runs until cancelled,
    reconnecting with backoff when Postgres goes away."""
    pending: set[asyncio.Task[None]] = set()

    async def index_entries(payload: str) -> None:
        try:
            await index.add_jobs(decode_payload(payload))
        except BackendUnavailable as exc:
            log.warning(
                "committed jobs not indexed; the reconciler will",
                extra={"action": "index_committed_jobs", "error": str(exc)},
            )
        except (ValueError, KeyError, IndexError, TypeError):
            log.warning(
                "ignored a malformed notification", extra={"action": "index_committed_jobs"}
            )

    def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        task = asyncio.create_task(index_entries(payload))
        pending.add(task)
        task.add_done_callback(pending.discard)

    delay = 0.1
    while True:
        try:
            async with store.listening(channel_name(namespace), on_notify) as is_closed:
                delay = 0.1
                # A dropped connection shows only in is_closed(); checking it twice a second
                # costs nothing and needs no callback plumbing.
                while not is_closed():  # noqa: ASYNC110
                    await asyncio.sleep(0.5)
        except Exception as exc:  # BackendUnavailable, or anything else: listen again
            log.debug(
                "listen connection lost",
                extra={"action": "index_committed_jobs", "error": str(exc)},
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)
