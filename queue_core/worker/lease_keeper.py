"""LeaseKeeper: a worker's leases, kept by a thread that does not depend on the event loop.

A handler that blocks the loop (``time.sleep`` in an ``async def``, a long computation) used
to stop the heartbeat with it: the leases of every job on the worker expired, the reconciler
rescued them, and they ran a second time elsewhere while the first run went on. Here the
leases are renewed from a thread with its own event loop and its own Postgres connection,
so they hold as long as the process lives. The same thread:

- watches the worker's loop (it ticks ``beat()`` every BEAT_SECONDS) and, while the loop is
  stalled, logs which job's handler holds it (found on the main thread's stack);
- records an attempt that is past its timeout while it blocks the loop: a final attempt is
  failed at once from here; one with a retry left gets its ``last_error`` now and is queued
  again by the loop when the handler lets go (so it never runs twice at once);
- ends a worker asked to stop whose loop stays blocked past the shutdown budget: it writes
  the outcomes already decided and exits the process (the stuck jobs' leases then expire).

Lost leases (the job was cancelled, or rescued after a long outage) are reported to the loop
with ``on_lost``, which cancels their handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Protocol

from queue_core.errors import BackendUnavailable
from queue_core.models import Attempt, Completion, Failure, RetryLater

from .handler_call import GUARDED_CODE
from .lease_backstop import LeaseBackstop

log = logging.getLogger(__name__)

BEAT_SECONDS = 0.2
"""The worker's loop ticks this often; the keeper looks this often."""
STALL_SECONDS = 1.0
"""A loop that has not ticked for this long is stalled: the keeper says by which job."""
OVERDUE_SECONDS = 0.5
"""An attempt this long past its timeout, undecided while the loop runs, ignores its
cancellation: the keeper records the timeout (the loop would have, at the timeout)."""
RECONNECT_MAX_SECONDS = 5.0


class KeeperStore(Protocol):
    """The keeper's own connection (store.open_lease_store): the statements it needs."""

    async def extend_leases(
        self, attempts: Sequence[Attempt], lease_seconds: float
    ) -> set[uuid.UUID]: ...
    async def fail_jobs(self, failures: Sequence[Failure]) -> set[uuid.UUID]: ...
    async def note_errors(self, failures: Sequence[Failure]) -> set[uuid.UUID]: ...
    async def complete_jobs(self, results: Sequence[Completion]) -> set[uuid.UUID]: ...
    async def retry_jobs(self, failures: Sequence[RetryLater]) -> object: ...
    async def aclose(self) -> None: ...


class State(enum.Enum):
    WAITING = "waiting"  # claimed ahead, not started
    RUNNING = "running"  # its handler runs
    DECIDED = "decided"  # its outcome is decided (written or about to be)
    TIMED_OUT = "timed_out"  # decided by the keeper while the handler blocked the loop


@dataclass(slots=True)
class Held:
    """One held attempt; changed only under the keeper's lock."""

    attempt: Attempt
    job_type: str
    final: bool  # no retry left: a failure now is the job's end
    state: State = State.WAITING
    deadline: float | None = None  # monotonic: when its timeout ends (set when it starts)
    timeout: float | None = None


class LeaseKeeper:
    def __init__(
        self,
        open_store: Callable[[], Awaitable[KeeperStore]],
        lease_seconds: float,
        worker_id: str,
        *,
        on_lost: Callable[[list[Attempt]], None],
        pending_outcomes: Callable[[], tuple[list[Completion], list[RetryLater], list[Failure]]],
        backstop: LeaseBackstop | None = None,
    ) -> None:
        """``open_store()`` opens the keeper's own connection (in its thread);
        ``on_lost(attempts)`` runs on the worker's loop; ``pending_outcomes()`` gives the
        outcomes decided but not yet written (read from the keeper's thread); ``backstop``,
        when given, is started with the thread and pulsed after every renewal."""
        self._open_store = open_store
        self.lease_seconds = lease_seconds
        self.worker_id = worker_id
        self._on_lost = on_lost
        self._pending_outcomes = pending_outcomes
        self._backstop = backstop
        self._held: dict[uuid.UUID, Held] = {}
        self._notes: list[Failure] = []  # errors to write, see note()
        self._lock = threading.Lock()
        self._beat = time.monotonic()
        self._last_stall: _Stall | None = None  # the latest stall with a known culprit
        self._stop_deadline: float | None = None  # monotonic: the worker must be gone by then
        self._stop_when_blocked = 0.0  # ... or by then if its loop is blocked
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the worker's
        self._keeper_loop: asyncio.AbstractEventLoop | None = None  # the thread's own
        self._task: asyncio.Task[None] | None = None  # the thread's main task
        self._main_thread = threading.main_thread().ident

    # --- called on the worker's loop -----------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._main_thread = threading.get_ident()
        self._beat = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="hybridq-lease-keeper", daemon=True)
        self._thread.start()

    def finish(self) -> None:
        """The worker is done: stop renewing and end the thread (a statement in flight is
        abandoned)."""
        self._finished.set()
        task, loop = self._task, self._keeper_loop
        if task is not None and loop is not None:
            with contextlib.suppress(RuntimeError):  # its loop already ended
                loop.call_soon_threadsafe(task.cancel)
        if self._thread is not None:
            self._thread.join(timeout=RECONNECT_MAX_SECONDS)
        if self._backstop is not None:
            self._backstop.stop()  # idempotent: the thread stops it too on its way out

    def beat(self, now: float | None = None) -> None:
        """The loop's pulse (``now``: its time.monotonic() reading, when it has one)."""
        self._beat = time.monotonic() if now is None else now

    def stall_culprit(self, since: float) -> Attempt | None:
        """The attempt seen holding the loop in the stall that began at the beat ``since``;
        None when none was seen (a frozen interpreter, a stalled host)."""
        stall = self._last_stall
        return stall.attempt if stall is not None and stall.since >= since else None

    def extend_deadline(self, attempt: Attempt, seconds: float) -> None:
        """Another handler's stall is paid back to this attempt (deadlines.py)."""
        with self._lock:
            held = self._held.get(attempt.id)
            if held is not None and held.attempt == attempt and held.deadline is not None:
                held.deadline += seconds

    def hold(self, attempt: Attempt, job_type: str, *, final: bool) -> None:
        with self._lock:
            self._held[attempt.id] = Held(attempt, job_type, final)

    def started(self, attempt: Attempt, timeout: float | None) -> None:
        with self._lock:
            held = self._held.get(attempt.id)
            if held is not None and held.attempt == attempt:
                held.state = State.RUNNING
                held.timeout = timeout
                held.deadline = None if timeout is None else time.monotonic() + timeout

    def decide(self, attempt: Attempt) -> bool:
        """Claim the right to decide the attempt's outcome: False when the keeper already
        decided it (it timed out while blocking the loop)."""
        with self._lock:
            held = self._held.get(attempt.id)
            if held is None or held.attempt != attempt:
                return True
            if held.state is State.TIMED_OUT:
                return False
            held.state = State.DECIDED
            return True

    def note(self, failure: Failure) -> None:
        """Write this attempt's error now, its status unchanged (a thread past its timeout:
        its retry waits until it returns). Written by the keeper's thread."""
        with self._lock:
            self._notes.append(failure)

    def timed_out_by_keeper(self, attempt: Attempt) -> Held | None:
        with self._lock:
            held = self._held.get(attempt.id)
        return held if held is not None and held.state is State.TIMED_OUT else None

    def holds(self, attempt: Attempt) -> bool:
        with self._lock:
            held = self._held.get(attempt.id)
        return held is not None and held.attempt == attempt

    def forget(self, attempts: Sequence[Attempt]) -> None:
        """Stop renewing these attempts (written, given back, or lost)."""
        with self._lock:
            for attempt in attempts:
                held = self._held.get(attempt.id)
                if held is not None and held.attempt == attempt:
                    del self._held[attempt.id]

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)

    def request_stop(self, grace_seconds: float, budget_seconds: float) -> None:
        """The worker was asked to stop: it must be gone within ``budget_seconds``, and a
        loop still blocked after ``grace_seconds`` will not get better. Safe to call from a
        signal handler, and again (the earliest request counts)."""
        now = time.monotonic()
        if self._stop_deadline is None:
            self._stop_deadline = now + budget_seconds
            self._stop_when_blocked = now + grace_seconds

    # --- the keeper's thread -------------------------------------------------------------

    def _run(self) -> None:
        if self._backstop is not None:
            self._backstop.start()
        try:
            asyncio.run(self._main())
        except asyncio.CancelledError:
            pass  # finish()
        except Exception:  # the thread must never die silently: say so, leases expire
            log.exception("lease keeper stopped", extra={"action": "extend_leases"})
        finally:
            if self._backstop is not None:
                self._backstop.stop()

    async def _main(self) -> None:
        self._keeper_loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        if self._finished.is_set():
            return
        await self._keep()

    async def _keep(self) -> None:
        store: KeeperStore | None = None
        try:
            next_renewal = time.monotonic() + self.lease_seconds / 3
            stall: _Stall | None = None
            delay = 0.1
            while not self._finished.is_set():
                if store is None:
                    try:
                        store = await self._open_store()
                        delay = 0.1
                    except Exception as exc:  # unreachable, or refused: try again later
                        log.warning(
                            "lease keeper cannot reach postgres; retrying",
                            extra={"action": "extend_leases", "error": str(exc)},
                        )
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, RECONNECT_MAX_SECONDS)
                        continue
                try:
                    if time.monotonic() >= next_renewal:
                        next_renewal = time.monotonic() + self.lease_seconds / 3
                        await self._renew(store)
                        if self._backstop is not None:
                            self._backstop.pulse()
                    stall = await self._watch_loop(store, stall)
                    if stall is None:
                        await self._time_out_overdue(store)
                    await self._write_notes(store)
                    await self._enforce_stop(store)
                except BackendUnavailable as exc:
                    log.warning(
                        "lease keeper lost postgres; reconnecting",
                        extra={"action": "extend_leases", "error": str(exc)},
                    )
                    await _close_quietly(store)
                    store = None
                    continue
                except Exception:  # whatever else happens here, the keeper must go on
                    log.exception(
                        "lease keeper round failed; going on", extra={"action": "extend_leases"}
                    )
                await asyncio.sleep(BEAT_SECONDS)
        finally:
            if store is not None:
                await _close_quietly(store)

    async def _renew(self, store: KeeperStore) -> None:
        with self._lock:
            held = [h.attempt for h in self._held.values()]
        if not held:
            return
        kept = await store.extend_leases(held, self.lease_seconds)
        lost = [a for a in held if a.id not in kept]
        if lost:
            self.forget(lost)
            self._to_loop(self._on_lost, lost)

    async def _watch_loop(self, store: KeeperStore, stall: _Stall | None) -> _Stall | None:
        """Log a stalled loop naming the job that holds it, and time out that job's attempt
        if it is past its timeout. Returns the stall in progress, if any."""
        last_beat = self._beat
        if time.monotonic() - last_beat < STALL_SECONDS:
            if stall is not None:
                log.info(
                    "event loop running again",
                    extra={
                        "action": "loop_stall",
                        "worker_id": self.worker_id,
                        "stalled_seconds": round(last_beat - stall.since, 3),
                    },
                )
            return None
        culprit = self._blocking_attempt()
        if stall is None or stall.attempt != culprit:
            with self._lock:
                held = self._held.get(culprit.id) if culprit is not None else None
            log.warning(
                "event loop blocked by a handler",
                extra={
                    "action": "loop_stall",
                    "worker_id": self.worker_id,
                    "job_id": str(culprit.id) if culprit else None,
                    "job_type": held.job_type if held else None,
                    "stalled_seconds": round(time.monotonic() - last_beat, 3),
                },
            )
            stall = _Stall(culprit, stall.since if stall is not None else last_beat)
            if culprit is not None:
                self._last_stall = stall
        if culprit is not None:
            await self._time_out_if_due(store, culprit)
        return stall

    async def _time_out_overdue(self, store: KeeperStore) -> None:
        """The loop runs, yet an attempt is OVERDUE_SECONDS past its timeout undecided: its
        handler ignores cancellation. Record its timeout from here."""
        cutoff = time.monotonic() - OVERDUE_SECONDS
        with self._lock:
            overdue = [
                h.attempt
                for h in self._held.values()
                if h.state is State.RUNNING and h.deadline is not None and h.deadline < cutoff
            ]
        for attempt in overdue:
            await self._time_out_if_due(store, attempt, "it ignored cancellation")

    async def _write_notes(self, store: KeeperStore) -> None:
        with self._lock:
            notes, self._notes = self._notes, []
        if notes:
            await store.note_errors(notes)

    async def _time_out_if_due(
        self, store: KeeperStore, attempt: Attempt, why: str = "it blocked the loop"
    ) -> None:
        with self._lock:
            held = self._held.get(attempt.id)
            if (
                held is None
                or held.attempt != attempt
                or held.state is not State.RUNNING
                or held.deadline is None
                or time.monotonic() < held.deadline
            ):
                return
            held.state = State.TIMED_OUT
        error = f"TimeoutError: handler ran longer than {held.timeout}s ({why})"
        failure = Failure(attempt, error)
        if held.final:
            await store.fail_jobs([failure])
            self.forget([attempt])
        else:
            await store.note_errors([failure])
        log.warning(
            "attempt timed out while blocking the loop",
            extra={
                "action": "timeout",
                "job_id": str(attempt.id),
                "job_type": held.job_type,
                "attempt": attempt.attempt,
                "worker_id": self.worker_id,
                "final": held.final,
            },
        )

    def _blocking_attempt(self) -> Attempt | None:
        """The attempt whose handler is on the main thread's stack right now, if any: the
        local of handler_call's own frame that runs every handler (no other frame's locals
        are read: a handler's could be an object of its own)."""
        frame: FrameType | None = sys._current_frames().get(self._main_thread or 0)
        while frame is not None:
            if frame.f_code is GUARDED_CODE:
                attempt = frame.f_locals.get("attempt")
                return attempt if type(attempt) is Attempt else None
            frame = frame.f_back
        return None

    async def _enforce_stop(self, store: KeeperStore) -> None:
        """Asked to stop, and past the budget (or past the grace with the loop blocked):
        write what is decided, then exit the process. The stuck attempts keep their leases
        until they expire."""
        if self._stop_deadline is None:
            return
        now = time.monotonic()
        blocked = now - self._beat >= STALL_SECONDS
        if now < self._stop_deadline and not (blocked and now >= self._stop_when_blocked):
            return
        completions, retries, failures = self._pending_outcomes()
        try:
            await store.complete_jobs(completions)
            await store.retry_jobs(retries)
            await store.fail_jobs(failures)
        finally:
            log.error(
                "worker did not stop in time: its event loop is blocked; exiting",
                extra={
                    "action": "worker_stop",
                    "worker_id": self.worker_id,
                    "blocked_by": str(culprit.id)
                    if (culprit := self._blocking_attempt())
                    else None,
                    "outcomes_written": len(completions) + len(retries) + len(failures),
                },
            )
            logging.shutdown()
            os._exit(0)

    def _to_loop(self, callback: Callable[[list[Attempt]], None], attempts: list[Attempt]) -> None:
        if self._loop is None:
            return
        try:
            self._loop.call_soon_threadsafe(callback, attempts)
        except RuntimeError:  # the loop is closed: the worker is gone
            pass


@dataclass(frozen=True)
class _Stall:
    attempt: Attempt | None  # whose handler holds the loop, when found
    since: float  # the loop's last beat before the stall


async def _close_quietly(store: KeeperStore) -> None:
    try:
        await store.aclose()
    except Exception:  # a broken connection: nothing to release
        log.debug("closing the lease keeper's connection failed", exc_info=True)
