"""The jobs a worker is running now: each one's job, fence, contract, task and thread."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from queue_core.contracts import JobContract
from queue_core.models import Attempt, Job

from .handler_call import Ended, ThreadEnd


@dataclass(eq=False)
class RunningJob:
    job: Job
    attempt: Attempt
    contract: JobContract
    task: asyncio.Task[None] | None = field(default=None)  # the attempt, in the runner
    thread: ThreadEnd[Ended] | None = field(default=None)  # a plain function's end
    decided: bool = False  # its outcome was handed to the OutcomeBuffer (or the keeper)

    @property
    def job_type(self) -> str:
        return str(self.job["job_type"])


class Running:
    """Running jobs by id; a newer attempt of the same job replaces an older one."""

    def __init__(self) -> None:
        self._by_id: dict[uuid.UUID, RunningJob] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[RunningJob]:
        return iter(list(self._by_id.values()))

    def add(self, running: RunningJob) -> None:
        self._by_id[running.attempt.id] = running

    def get(self, attempt: Attempt) -> RunningJob | None:
        running = self._by_id.get(attempt.id)
        return running if running is not None and running.attempt == attempt else None

    def remove(self, attempt: Attempt) -> bool:
        """Forget the attempt if it is the one running; whether it was."""
        if self.get(attempt) is None:
            return False
        del self._by_id[attempt.id]
        return True
