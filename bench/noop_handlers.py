"""The no-op job of every hybridq benchmark: it records that it ran and does nothing else.

Job type ``noop``, input ``{"i": job number, "t": the producer's time.time() taken just before
the enqueue call}``. The handler ends with ``benchlib.record(i, t, t_start)``, as the shared
peer harness requires of every queue's job: in the harness's worker processes ``benchlib`` is
importable because the harness puts its own folder on PYTHONPATH (bench/peer_adapter.py keeps
it there). In bench's own scenarios, which run without the harness, an identical recorder here
appends the same line to the file named by ``$BENCH_EVENTS``.

Run a worker with it: ``python -m queue_core worker --handlers bench.noop_handlers``.
"""

from __future__ import annotations

import os
import time
from typing import Any

JOB_TYPE = "noop"
EVENTS_ENV = "BENCH_EVENTS"


def _record(i: int, t_enq: float, t_start: float) -> None:
    """benchlib.record's line, ``"<i> <t_enq> <t_start> <t_end> <pid>\\n"``, in one O_APPEND
    write (atomic for a short line, so several worker processes may share the file)."""
    t_end = time.time()
    line = f"{int(i)} {t_enq:.6f} {t_start:.6f} {t_end:.6f} {os.getpid()}\n"
    os.write(_fd(), line.encode())


_fds: dict[tuple[int, str], int] = {}


def _fd() -> int:
    key = (os.getpid(), os.environ[EVENTS_ENV])
    if key not in _fds:
        _fds[key] = os.open(key[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    return _fds[key]


try:  # inside the peer harness's workers
    from benchlib import record  # type: ignore[import-not-found]
except ImportError:  # bench's own scenarios
    record = _record


async def noop(job: dict[str, Any]) -> None:
    t_start = time.time()
    record(job["input"]["i"], job["input"]["t"], t_start)


def register(runner: Any) -> None:
    runner.register_handler(JOB_TYPE, noop)
