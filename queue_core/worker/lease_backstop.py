"""The lease backstop: a child process that keeps a worker's leases while the worker's whole
interpreter is frozen.

The lease keeper (lease_keeper.py) renews from a thread, so a handler that blocks the event
loop cannot stop it. A handler that holds the GIL can: C code that never releases it (a
regular expression backtracking for minutes, a C extension's long call) or a handler that
raises ``sys.setswitchinterval`` freezes every thread of the process. Without the backstop
those leases would expire, the reconciler would rescue the jobs, and they would run on a
second worker while the first still runs them.

So each worker starts this process (``python -m queue_core.worker.lease_backstop_main``) and its
keeper writes a pulse to it after every renewal it makes. While pulses arrive the backstop
does nothing (no connection, no statement). When the keeper has been silent for half a
lease, the backstop connects and extends every lease of the worker's claims
(``extend_worker_leases``) every quarter lease, until pulses come back. It exits when its
stdin closes, i.e. when the worker process is gone however it died (or when its parent
changes, in case a forked grandchild kept the pipe open): a dead worker's leases then
expire as before, so crashes stay at-least-once.

The parent writes one JSON line of configuration first (the DSN goes through the pipe, not
the command line, which every user of the host can read), then ``.`` per pulse.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace

from queue_core.errors import BackendUnavailable
from queue_core.store import PgStore, open_lease_store

log = logging.getLogger(__name__)

RESTART_MIN_SECONDS = 1.0
"""A backstop that died is started again, at most this often."""
STOP_SECONDS = 2.0
"""How long stop() waits for the process to exit before it kills it."""


@dataclass(frozen=True)
class BackstopConfig:
    dsn: str
    schema: str | None
    worker_id: str
    lease_seconds: float
    log_json: bool = False
    log_level: str = "INFO"
    last_pulse: float | None = None
    """When the keeper last renewed, on the host's monotonic clock (shared by every process
    on Linux): a backstop started late, or again, counts the silence from then, not from
    its own start."""


class LeaseBackstop:
    """The worker's side: starts the process, pulses it, restarts it if it dies, stops it.
    Used from the lease keeper's thread only; never blocks it (a pulse the pipe cannot take
    now is dropped: a missed pulse costs at most one early renewal)."""

    def __init__(self, config: BackstopConfig) -> None:
        self.config = config
        self._process: subprocess.Popen[bytes] | None = None
        self._started_at = -RESTART_MIN_SECONDS
        self._last_pulse: float | None = None

    def start(self) -> None:
        """Start the process; an OSError (no fork, no executable) is logged, and start()
        tried again by pulse() later."""
        self._started_at = time.monotonic()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "queue_core.worker.lease_backstop_main"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,  # one line, "ready", once it watches the pulses
                close_fds=True,
            )
        except OSError as exc:
            log.error(
                "lease backstop could not start; leases depend on the keeper thread alone",
                extra={"action": "lease_backstop", "error": str(exc)},
            )
            return
        assert process.stdin is not None
        last_pulse = self._last_pulse if self._last_pulse is not None else self._started_at
        config = replace(self.config, last_pulse=last_pulse)
        line = json.dumps(asdict(config)).encode() + b"\n"
        try:
            process.stdin.write(line)
            process.stdin.flush()
            os.set_blocking(process.stdin.fileno(), False)
        except OSError:
            pass  # it died at once: pulse() notices and starts another
        self._process = process

    def pulse(self) -> None:
        """The keeper has just renewed: tell the backstop (and start it again if it died)."""
        self._last_pulse = time.monotonic()
        process = self._process
        if process is None or process.poll() is not None:
            if process is not None:
                log.warning(
                    "lease backstop exited; starting it again",
                    extra={"action": "lease_backstop", "returncode": process.returncode},
                )
                self._process = None
            if time.monotonic() - self._started_at >= RESTART_MIN_SECONDS:
                self.start()
            return
        assert process.stdin is not None
        with contextlib.suppress(BlockingIOError, BrokenPipeError, OSError):
            os.write(process.stdin.fileno(), b".")

    def stop(self) -> None:
        """Stop the backstop: the worker no longer holds leases (or stops renewing them)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def wait_ready(self, timeout: float) -> bool:
        """Whether the process is up and watching the pulses within ``timeout`` seconds
        (it imports the engine first: most of a second)."""
        process = self._process
        if process is None or process.stdout is None:
            return False
        readable, _, _ = select.select([process.stdout], [], [], timeout)
        return bool(readable) and process.stdout.readline() == b"ready\n"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None


# --- the backstop process ------------------------------------------------------------------


async def serve(config: BackstopConfig, stdin_fd: int, ready_fd: int, parent_pid: int) -> None:
    """Watch the pulses on ``stdin_fd`` until it closes; renew while they stop."""
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()
    last_pulse = min(config.last_pulse or time.monotonic(), time.monotonic())

    def on_readable() -> None:
        nonlocal last_pulse
        try:
            data = os.read(stdin_fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(stdin_fd)
            closed.set()
        else:
            last_pulse = time.monotonic()

    os.set_blocking(stdin_fd, False)
    loop.add_reader(stdin_fd, on_readable)
    await asyncio.sleep(0.01)  # read the pulses sent while this process was starting
    os.write(ready_fd, b"ready\n")
    lease = config.lease_seconds
    store: PgStore | None = None
    renewing_since: float | None = None
    try:
        while not closed.is_set() and os.getppid() == parent_pid:
            silent = time.monotonic() - last_pulse
            if silent < lease / 2:
                if renewing_since is not None:
                    log.info(
                        "lease keeper renewing again; backstop idle",
                        extra={"action": "lease_backstop", "worker_id": config.worker_id},
                    )
                    renewing_since = None
                if store is not None:
                    await _close_quietly(store)
                    store = None
                await _wait(closed, lease / 2 - silent)
                continue
            try:
                if store is None:
                    store = await open_lease_store(config.dsn, config.schema)
                extended = await store.extend_worker_leases(config.worker_id, lease)
            except (BackendUnavailable, OSError) as exc:
                log.warning(
                    "lease backstop cannot reach postgres",
                    extra={"action": "lease_backstop", "error": str(exc)},
                )
                if store is not None:
                    await _close_quietly(store)
                    store = None
            except Exception:  # the backstop must outlive any error of its own
                log.exception("lease backstop round failed", extra={"action": "lease_backstop"})
            else:
                if renewing_since is None:
                    renewing_since = time.monotonic()
                    log.warning(
                        "lease keeper silent: the backstop renews this worker's leases",
                        extra={
                            "action": "lease_backstop",
                            "worker_id": config.worker_id,
                            "silent_seconds": round(silent, 3),
                            "leases": extended,
                        },
                    )
            await _wait(closed, lease / 4)
    finally:
        if store is not None:
            await _close_quietly(store)


async def _wait(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), max(timeout, 0.01))


async def _close_quietly(store: PgStore) -> None:
    try:
        await store.aclose()
    except Exception:  # a broken connection: nothing to release
        log.debug("closing the backstop's connection failed", exc_info=True)


def main() -> None:
    # Ctrl-C in a terminal and a supervisor's SIGTERM reach the whole process group: the
    # backstop must outlive them as long as its worker does, and go when the worker goes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent_pid = os.getppid()
    stdin_fd = sys.stdin.fileno()
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(stdin_fd, 1)
        if not chunk:
            return  # the worker went before saying anything
        line += chunk
    config = BackstopConfig(**json.loads(line))

    from queue_core.telemetry.logs import configure_logging

    configure_logging(json_lines=config.log_json, level=config.log_level)
    asyncio.run(serve(config, stdin_fd, sys.stdout.fileno(), parent_pid))

