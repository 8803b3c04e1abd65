"""Worker processes for bench's own scenarios, and the completion events they write.

A worker is ``python -m queue_core worker --handlers bench.noop_handlers``, started in its own
process group and stopped by that group's id (SIGTERM, then SIGKILL after a grace period).
Completion is read from the events file the no-op handler appends to (bench/noop_handlers.py),
never by polling the queue, so measuring adds no load to the servers under test.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from queue_core import Settings

from .sandbox import REPO, worker_env


@dataclass
class Events:
    """Tails an events file: one line ``i t_enq t_start t_end pid`` per handler run."""

    path: Path
    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)
    duplicates: int = 0
    _offset: int = 0
    _rest: bytes = b""

    def poll(self) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return len(self.seen)
        self._offset += len(data)
        *lines, self._rest = (self._rest + data).split(b"\n")
        for line in lines:
            parts = line.split()
            if len(parts) != 5:
                continue
            i = int(parts[0])
            if i in self.seen:
                self.duplicates += 1
                continue
            self.seen.add(i)
            self.starts.append(float(parts[2]))
            self.ends.append(float(parts[3]))
        return len(self.seen)


class WorkerProcess:
    def __init__(self, settings: Settings, events: Path, concurrency: int, log: Path) -> None:
        cmd = [
            sys.executable, "-m", "queue_core", "worker",
            "--handlers", "bench.noop_handlers", "--concurrency", str(concurrency),
        ]
        self.command = " ".join(["python", *cmd[1:]])
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.launched = time.time()
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=worker_env(settings, events), stdout=self._log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to the worker's own process group, SIGKILL if it outlives ``grace``."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        self._log.close()


async def drain(
    settings: Settings, jobs: int, *, concurrency: int, timeout: float, run_dir: Path, label: str
) -> dict[str, object]:
    """Start one worker on an already filled queue; wait until ``jobs`` distinct jobs ran.
    Reports the steady rate (jobs / (last end - first start)) and the rate including the
    worker's start-up, like the peer harness's S2."""
    events = Events(run_dir / f"events-{label}.log")
    events.path.write_bytes(b"")
    worker = WorkerProcess(settings, events.path, concurrency, run_dir / f"worker-{label}.log")
    deadline = time.monotonic() + timeout
    status = "ok"
    try:
        while events.poll() < jobs:
            if time.monotonic() > deadline:
                status = "timeout"
                break
            if not worker.alive():
                status = f"worker exited with code {worker.proc.returncode}"
                break
            await asyncio.sleep(0.02)
    finally:
        worker.stop()
        events.path.unlink(missing_ok=True)
    done = min(len(events.seen), jobs)
    result: dict[str, object] = {
        "jobs": jobs, "completed": done, "status": status, "concurrency": concurrency,
        "duplicates": events.duplicates, "worker_command": worker.command,
    }
    if done:
        first_start = min(events.starts)
        last_end = sorted(events.ends)[done - 1]
        result.update(
            startup_seconds=round(first_start - worker.launched, 3),
            drain_seconds=round(last_end - first_start, 3),
            jobs_per_s=done / max(last_end - first_start, 1e-9),
            jobs_per_s_incl_startup=done / max(last_end - worker.launched, 1e-9),
        )
    return result
