"""Leases: the attempts a worker holds, from its claim until the attempt's outcome is written
or the job is given back, renewed together in one statement per heartbeat."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence

from queue_core.errors import BackendUnavailable
from queue_core.models import Attempt
from queue_core.ports import ClaimStore, ReadyIndex

log = logging.getLogger(__name__)

RELEASE_TRIES = 8
"""Tries to give jobs back (backoff 0.1 s doubling to 1 s: about 5 s in all)."""


class Leases:
    def __init__(
        self, store: ClaimStore, index: ReadyIndex, lease_seconds: float, worker_id: str
    ) -> None:
        self._store = store
        self._index = index
        self.lease_seconds = lease_seconds  # renewed every third of it
        self.worker_id = worker_id
        self._held: dict[uuid.UUID, Attempt] = {}

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, attempt: Attempt) -> None:
        self._held[attempt.id] = attempt

    def holds(self, attempt: Attempt) -> bool:
        return self._held.get(attempt.id) == attempt

    def forget(self, attempts: Sequence[Attempt]) -> None:
        """Stop renewing these attempts (their outcome was written, or the lease was lost);
        a newer attempt of the same job held meanwhile is kept."""
        for attempt in attempts:
            if self._held.get(attempt.id) == attempt:
                del self._held[attempt.id]

    async def renew(self) -> list[Attempt]:
        """Extend every held lease in one statement; returns the attempts whose lease was
        lost (cancelled, or rescued after it expired), which are no longer held. Postgres
        unreachable: logged, nothing lost yet (the leases have two more thirds to run)."""
        held = list(self._held.values())
        if not held:
            return []
        try:
            kept = await self._store.extend_leases(held, self.lease_seconds)
        except BackendUnavailable as exc:
            log.warning("heartbeat failed", extra={"action": "extend_leases", "error": str(exc)})
            return []
        lost = [a for a in held if a.id not in kept and self.holds(a)]
        self.forget(lost)
        return lost

    async def give_back(self, attempts: Sequence[Attempt]) -> bool:
        """Release claimed jobs to the queue, attempt not counted, and index them again.
        False when Postgres would not take them within a few seconds (still held)."""
        delay = 0.1
        for _ in range(RELEASE_TRIES):
            try:
                entries = await self._store.release_jobs(attempts)
                break
            except BackendUnavailable:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        else:
            log.error(
                "could not release jobs now",
                extra={"action": "release_jobs", "jobs": len(attempts)},
            )
            return False
        self.forget(attempts)
        with contextlib.suppress(BackendUnavailable):  # else the reconciler indexes them
            await self._index.add_jobs(entries)
        log.info(
            "released unfinished jobs",
            extra={"action": "release_jobs", "jobs": len(entries), "worker_id": self.worker_id},
        )
        return True
