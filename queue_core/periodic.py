"""Periodic jobs: a cron expression that enqueues a job at every tick, and what happens to
the ticks nobody was there to enqueue. Pure: no I/O.

Declared next to the handlers, in the handlers module's ``register(runner)``:

    runner.register_periodic("nightly-digest", cron="0 3 * * *",
                             job_type="briefing_generation", input={"topic": "digest"},
                             catch_up="latest")

The reconciler (``hybridq reconcile``) runs the scheduler (maintenance/scheduler.py). Each
schedule has a *position* in its own table (``periodic_schedules``, migration 0010), apart
from the job rows that retention and purge delete: every tick at or before it has been
handled, enqueued or skipped, and is never handled again. A schedule seen for the first
time starts at that moment: its first tick is the next one.

When a pass finds ticks after the position (normally one, a few seconds late), the
schedule's ``catch_up`` policy decides which of them run (docs/design/periodic-ticks.md):

- ``none`` (default): only the latest tick, and only while it is on time (at most
  ON_TIME late); after an outage the missed ticks are skipped and the schedule resumes at
  its next tick.
- ``latest``: the latest tick, however late; the older missed ones are skipped.
- ``all``: every tick within ``catch_up_window`` of now (and any on-time one), oldest first,
  at most CATCH_UP_MAX_TICKS per pass; older ones are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from croniter import croniter

from .errors import InvalidJob
from .models import NewJob, encode_input, validate_job_type

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")

ON_TIME = timedelta(minutes=10)
"""A tick enqueued at most this long after it fell due is on time, whatever the policy: the
reconciler runs every few seconds to a few minutes (`--every`, or cron), and that delay is
not an outage."""
CATCH_UP_MAX_TICKS = 1000
"""Ticks one pass enqueues for one schedule at most (``all``); the next pass continues."""
CATCH_UP_WINDOW_MAX = timedelta(days=366)


class CatchUp(StrEnum):
    """What runs of the ticks that fell due while no scheduler ran (see the module doc)."""

    NONE = "none"
    LATEST = "latest"
    ALL = "all"


@dataclass(frozen=True)
class TickPlan:
    """What one pass does with a schedule: enqueue ``due`` (oldest first), then hold every
    tick at or before ``position`` handled. ``skipped``: the first and last tick it skips."""

    due: list[datetime]
    position: datetime
    skipped: tuple[datetime, datetime] | None = None


@dataclass(frozen=True)
class TickJob:
    """The job of one tick, inserted in the transaction that moves the schedule past it."""

    tick: datetime
    job: NewJob
    idempotency_key: str


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    cron: str  # five fields, UTC
    job_type: str
    input: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    max_retries: int = 3
    catch_up: CatchUp = CatchUp.NONE
    catch_up_window: timedelta | None = None  # with catch_up="all" only

    def last_tick(self, now: datetime) -> datetime:
        """The latest tick at or before ``now`` (UTC)."""
        after = now.astimezone(UTC) + timedelta(microseconds=1)
        return _aware(croniter(self.cron, after).get_prev(datetime))

    def next_tick(self, after: datetime) -> datetime:
        """The first tick strictly after ``after`` (UTC)."""
        return _aware(croniter(self.cron, after.astimezone(UTC)).get_next(datetime))

    def idempotency_key(self, tick: datetime) -> str:
        return f"periodic:{self.name}:{tick.strftime('%Y%m%dT%H%M%SZ')}"

    def plan(self, position: datetime, now: datetime) -> TickPlan:
        """Which ticks after ``position`` (the schedule's, see the module doc) a pass at
        ``now`` enqueues, and the position after it."""
        latest = self.last_tick(now)
        if latest <= position:
            return TickPlan([], position)
        if self.catch_up == CatchUp.ALL:
            return self._plan_all(position, now, latest)
        on_time = now - latest <= ON_TIME
        due = [latest] if on_time or self.catch_up == CatchUp.LATEST else []
        first = self.next_tick(position)
        last_skipped = latest if not due else self.last_tick(latest - timedelta(microseconds=1))
        skipped = (first, last_skipped) if first <= last_skipped else None
        return TickPlan(due, latest, skipped)

    def _plan_all(self, position: datetime, now: datetime, latest: datetime) -> TickPlan:
        window = max(self.catch_up_window or timedelta(0), ON_TIME)
        earliest = max(position, now - window - timedelta(microseconds=1))
        due: list[datetime] = []
        tick = self.next_tick(earliest)
        while tick <= now and len(due) < CATCH_UP_MAX_TICKS:
            due.append(tick)
            tick = self.next_tick(tick)
        first = self.next_tick(position)
        skipped = (first, self.last_tick(earliest)) if first <= earliest else None
        return TickPlan(due, due[-1] if due else latest, skipped)


def make_periodic(
    name: str,
    *,
    cron: str,
    job_type: str,
    input: dict[str, Any] | None = None,
    priority: int = 0,
    max_retries: int = 3,
    catch_up: str = "none",
    catch_up_window: timedelta | None = None,
) -> PeriodicJob:
    """A validated declaration; InvalidJob naming the problem otherwise."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidJob(f"periodic job name must match {_NAME.pattern}")
    if not isinstance(cron, str) or len(cron.split()) != 5 or not croniter.is_valid(cron):
        raise InvalidJob(f"invalid cron expression for {name!r}: {cron!r} (five fields, UTC)")
    validate_job_type(job_type)
    encode_input(input or {})
    policy = _catch_up(name, catch_up, catch_up_window)
    return PeriodicJob(
        name, cron, job_type, dict(input or {}), priority, max_retries, policy, catch_up_window
    )


def _catch_up(name: str, catch_up: str, window: timedelta | None) -> CatchUp:
    if catch_up not in set(CatchUp):
        raise InvalidJob(f"catch_up of {name!r} must be one of {', '.join(CatchUp)}")
    policy = CatchUp(catch_up)
    if policy != CatchUp.ALL:
        if window is not None:
            raise InvalidJob(f"catch_up_window of {name!r} applies to catch_up='all' only")
        return policy
    if not isinstance(window, timedelta) or not timedelta(0) < window <= CATCH_UP_WINDOW_MAX:
        raise InvalidJob(
            f"catch_up='all' of {name!r} needs catch_up_window: a timedelta up to "
            f"{CATCH_UP_WINDOW_MAX.days} days"
        )
    return policy


def _aware(tick: datetime) -> datetime:
    return tick.replace(tzinfo=UTC) if tick.tzinfo is None else tick.astimezone(UTC)
