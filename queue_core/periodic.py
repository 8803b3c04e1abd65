"""Periodic jobs: a cron expression that enqueues a job at every tick.

Declared next to the handlers, in the handlers module's ``register(runner)``:

    runner.register_periodic("nightly-digest", cron="0 3 * * *",
                             job_type="briefing_generation", input={"topic": "digest"})

The reconciler (``hybridq reconcile``) enqueues each due tick (maintenance/scheduler.py).
This module only defines and validates them. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from croniter import croniter

from .errors import InvalidJob
from .models import encode_input, validate_job_type

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    cron: str  # five fields, UTC
    job_type: str
    input: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    max_retries: int = 3

    def last_tick(self, now: datetime) -> datetime:
        """The latest tick at or before ``now`` (UTC)."""
        after = now.astimezone(UTC) + timedelta(microseconds=1)
        tick: datetime = croniter(self.cron, after).get_prev(datetime)
        return tick.replace(tzinfo=UTC) if tick.tzinfo is None else tick

    def idempotency_key(self, tick: datetime) -> str:
        return f"periodic:{self.name}:{tick.strftime('%Y%m%dT%H%M%SZ')}"


def make_periodic(
    name: str,
    *,
    cron: str,
    job_type: str,
    input: dict[str, Any] | None = None,
    priority: int = 0,
    max_retries: int = 3,
) -> PeriodicJob:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidJob(f"periodic job name must match {_NAME.pattern}")
    if not isinstance(cron, str) or len(cron.split()) != 5 or not croniter.is_valid(cron):
        raise InvalidJob(f"invalid cron expression for {name!r}: {cron!r} (five fields, UTC)")
    validate_job_type(job_type)
    encode_input(input or {})
    return PeriodicJob(name, cron, job_type, dict(input or {}), priority, max_retries)
